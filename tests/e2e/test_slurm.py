"""End-to-end on a real single-node SLURM: `snakemake --profile slurm` submits the jobs.

SciFact ingestion -> BM25 index -> BM25 search -> evaluation, and pools, each a SLURM job; the
test reads the jobs' own records (`scontrol show job`: CPUs, memory, time limit, state) and the
outputs. The cluster is started by tests/slurm/start.sh (root and Debian's
apt needed); where it cannot start, the tests are skipped with its reason.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from collections.abc import Iterator

import pandas as pd
import pytest
from conftest import REPO, Workflow

pytestmark = pytest.mark.e2e

START = REPO / "tests" / "slurm" / "start.sh"
CONFIG = {
    "experiment": "slurm",
    "datasets": {"scifact": {"format": "beir"}},
    "corpus": {"shard_size": 2000},
    "train": {"dataset": "scifact", "split": "train"},
    "evaluation": {"targets": [{"dataset": "scifact", "split": "test"}]},
    "bm25": {"threads": 2},
    "pools": {"negatives": 30, "max_queries": 40, "seed": 0, "shards": 1},
}
METRICS = "results/slurm/eval/bm25/scifact.test.metrics.parquet"
POOLS = "results/slurm/pools/shard-0.parquet"
# What the rules declare (workflow/rules/*.smk): CPUs = threads, memory, minutes at attempt 1.
# Two BM25 searches (the test split, evaluated; the train split, whose run feeds the pools) and
# one evaluation job for the run, a CPU job of its own.
EXPECTED = {
    "rule_ingest_dataset": [(1, 16000, 120)],
    "rule_bm25_index": [(2, 8000, 240)],
    "rule_bm25_search": [(2, 8000, 240), (2, 8000, 240)],
    "rule_evaluate_run": [(1, 4000, 60)],
    "rule_build_pools": [(1, 16000, 60)],
}


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        pytest.skip(f"no single-node SLURM here: {reason}")
    node = subprocess.run(["sinfo", "-h", "-o", "%c %m"], capture_output=True, text=True)
    cpus, memory = (int(x.rstrip("+")) for x in node.stdout.split()[:2])
    # A job asking more than the node has would pend for ever (SLURM's reason: Resources).
    if cpus < 2 or memory < 16000:
        pytest.skip(f"the SLURM node has {cpus} CPUs, {memory} MB; the rules ask up to 2, 16000")
    yield
    cancel_jobs()


def cancel_jobs() -> None:
    """A run that failed or timed out leaves its jobs queued: they must not hold the node."""
    subprocess.run(["scancel", "--user", getpass.getuser()], capture_output=True)


def cluster_state() -> str:
    """What SLURM says about the node and the queue, for a failure message."""
    cmds = [
        ["sinfo", "-N", "-o", "%N %T reason=%E cpus(A/I/O/T)=%C mem=%m gres=%G"],
        ["squeue", "--states=all", "-o", "%i %j %T reason=%r time=%M"],
    ]
    out = [subprocess.run(c, capture_output=True, text=True).stdout for c in cmds]
    return "\n".join(out)


def scontrol_job(jobid: str) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (the job stays there for MinJobAge)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", jobid],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def minutes(limit: str) -> int:
    """SLURM's [days-]hours:minutes:seconds as minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory, scifact_dir):
    wf = Workflow(tmp_path_factory.mktemp("slurm"))
    wf.add_dataset("scifact", scifact_dir)
    wf.write_config("config.yaml", CONFIG)
    try:
        proc = wf.run(
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--slurm-init-seconds-before-status-checks",
            "5",
            METRICS,
            POOLS,
            config="config.yaml",
            timeout=1200,  # ~3 min here; a controller that cannot see its jobs waits for ever
        )
    except subprocess.TimeoutExpired as exc:
        log = (exc.stderr or b"").decode(errors="replace")[-4000:]
        state = cluster_state()
        cancel_jobs()
        pytest.fail(f"the SLURM run did not finish in 1200 s\n{state}\n{log}")
    log = proc.stdout + proc.stderr
    (wf.workdir / "snakemake.log").write_text(log)
    jobids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    records = [scontrol_job(j) for j in jobids]
    return wf, log, records


def test_jobs_run_on_slurm_with_the_rules_resources(slurm_run):
    _, log, records = slurm_run
    assert records, log[-3000:]
    seen = {}
    for rec in records:
        assert rec["JobState"] == "COMPLETED", rec
        shape = (
            int(rec["NumCPUs"]),
            int(rec["MinMemoryNode"].rstrip("M")),
            minutes(rec["TimeLimit"]),
        )
        seen.setdefault(rec["Comment"].split("_wildcards_")[0], []).append(shape)
    assert seen == EXPECTED, seen
    # The profile's status command does not need accounting (sacct would wait forever here).
    assert "accounting storage is disabled" not in log.lower()


def test_outputs_of_the_slurm_run(slurm_run):
    wf, _, _ = slurm_run
    metrics = pd.read_parquet(wf.workdir / METRICS)
    ndcg = metrics.query("measure == 'nDCG@10'")["value"].item()
    assert 0.676 <= ndcg <= 0.682  # the same BM25 as the local run (pyserini BEIR flat: 0.679)
    pools = pd.read_parquet(wf.workdir / POOLS)
    assert pools["query_id"].nunique() == 40
    assert (pools.groupby("query_id")["is_human_positive"].sum() >= 1).all()


def test_gpu_jobs_are_scheduled_on_the_fake_gpus(slurm_cluster):
    """The test cluster's GPUs are device files (start.sh): enough to schedule --gpus jobs."""
    try:
        proc = subprocess.run(
            ["srun", "--gpus=2", "--time=1", "--mem=100", "printenv", "CUDA_VISIBLE_DEVICES"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"a --gpus=2 job did not run within 120 s\n{cluster_state()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0,1"
