"""The annotation stage inside the full workflow: the real Snakefile plans it from the pools.

A dry run only (the upstream stages take minutes on CPU); test_annotation_pipeline.py runs the
annotation rules for real.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def default_shards() -> int:
    """pools.shards of the embedded default config."""
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["pools"]["shards"]


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule that `snakemake -n` plans with the embedded default config."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "2",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--config",
        f"paths={{'datasets': '{SHARED_DATA}', 'models': 'resources/models'}}",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def test_default_targets_include_the_annotation_report(tmp_path):
    jobs = dry_run(tmp_path)
    assert jobs["annotate_shard"] == default_shards()
    assert jobs["prepare_llm"] == 1
    assert jobs["annotation_report"] == 1
    assert jobs["build_pools"] == 1
    # the demo's report-only calibration (SciFact train pools, DL19 mini) gates the annotation
    assert jobs["calibrate_annotation"] == 1 and jobs["calibration_gate"] == 1
    assert jobs["ingest_dataset"] == 3  # scifact, nq-oracle, msmarco-dl19-mini


def test_labels_target_plans_exactly_the_annotation_chain(tmp_path):
    jobs = dry_run(tmp_path, "--", "results/demo/annotation/labels.parquet")
    assert jobs["merge_annotation"] == 1 and jobs["annotate_shard"] == default_shards()
    assert "annotation_report" not in jobs and "train" not in jobs
