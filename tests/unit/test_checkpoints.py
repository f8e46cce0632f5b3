"""Resume checkpoints: atomic layout, pruning, stale fingerprints, RNG round trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from utilann.train.checkpoints import (
    CheckpointPolicy,
    CheckpointStore,
    rng_state,
    run_fingerprint,
    set_rng_state,
)
from utilann.train.settings import TrainSettings


def store(tmp_path, fingerprint="abc", every=2, keep=1) -> CheckpointStore:
    return CheckpointStore(CheckpointPolicy(tmp_path / "resume", every, keep), fingerprint)


def test_due_every_n_steps_but_never_at_the_end(tmp_path):
    s = store(tmp_path, every=3)
    assert [step for step in range(1, 10) if s.due(step, total=9)] == [3, 6]
    assert not any(store(tmp_path, every=0).due(step, 9) for step in range(1, 10))
    with pytest.raises(ValueError, match="every_steps must be >= 0"):
        CheckpointPolicy(tmp_path, every_steps=-1)


def test_save_load_keeps_the_newest(tmp_path):
    s = store(tmp_path, keep=1)
    assert s.load_latest() is None  # no directory yet
    for step in (2, 4):
        s.save(step, {"weights": torch.full((3,), float(step)), "curve": [{"step": step}]}, {})
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["step-000000004"]
    meta = json.loads((tmp_path / "resume/step-000000004/checkpoint.json").read_text())
    assert meta["step"] == 4 and meta["fingerprint"] == "abc"
    state = s.load_latest()
    assert torch.equal(state["weights"], torch.full((3,), 4.0))
    assert state["curve"] == [{"step": 4}] and "torch" in state["rng"]


def test_a_killed_write_and_stale_checkpoints_are_removed(tmp_path):
    s = store(tmp_path, keep=2)
    s.save(2, {"x": torch.zeros(1)}, {})
    partial = tmp_path / "resume" / ".step-000000004.tmp"
    partial.mkdir()
    (partial / "state.pt").write_bytes(b"cut short")
    assert s.load_latest() is not None and not partial.exists()
    other = store(tmp_path, fingerprint="changed settings")
    assert other.load_latest() is None
    assert not list((tmp_path / "resume").iterdir())
    other.clear()
    assert not (tmp_path / "resume").exists()


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = rng_state()
    draws = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_state(saved)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])


def test_fingerprint_follows_settings_and_input_bytes(tmp_path):
    trainset, init = tmp_path / "t.parquet", tmp_path / "init"
    init.mkdir()
    trainset.write_bytes(b"rows")
    (init / "model.safetensors").write_bytes(b"weights")
    base = run_fingerprint(TrainSettings(), 1, trainset, init)
    assert base == run_fingerprint(TrainSettings(), 1, trainset, init)
    assert base != run_fingerprint(TrainSettings(lr=1e-5), 1, trainset, init)
    assert base != run_fingerprint(TrainSettings(), 2, trainset, init)
    (init / "model.safetensors").write_bytes(b"other weights")
    assert base != run_fingerprint(TrainSettings(), 1, trainset, init)
