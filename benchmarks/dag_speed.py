"""How long Snakemake takes to plan the paper's DAG: a dry run, and a rerun with nothing to do.

    python benchmarks/dag_speed.py                       # config/experiments/msmarco-paper.yaml
    python benchmarks/dag_speed.py --repeats 5 --profile profiles/slurm

1. dry run: ``snakemake -n`` in an empty working directory (every job planned);
2. no-op: every output of that DAG is created as an empty placeholder with the metadata a
   finished job records (see build_as_if_run), then ``snakemake -n`` must answer "Nothing to
   be done" - the cost of a rerun after everything has been built, with every rerun trigger
   (mtime, params, input, software-env, code) checked.

Prints the wall time of each repetition and the median. Figures depend on the load of the
machine: run it on an idle one for the README.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from workflow_run import ROOT, snakemake_command

PAPER = ROOT / "config" / "experiments" / "msmarco-paper.yaml"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snakemake(workdir: Path, configfile: Path, *args: str) -> tuple[float, float, str]:
    """(wall s, CPU s, output) of one snakemake run."""
    cmd = snakemake_command(workdir, configfile, *args)
    start, cpu = time.perf_counter(), cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, cpu, proc.stdout + proc.stderr


def build_as_if_run(workdir: Path, configfile: Path) -> int:
    """Create every output of the DAG and record its metadata as if its job had run.

    Each job's outputs become empty placeholders (files, or directories holding one file),
    in the order the DAG runs them, so that no output is older than its inputs. Then the
    metadata a finished job leaves in .snakemake/metadata (code, params, input, software
    environment: what the rerun triggers compare) is written by Snakemake's own persistence
    layer, as at the end of a real job. Returns the number of jobs.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=ROOT / "Snakefile",
            workdir=workdir,
        )
        workflow_api.dag(DAGSettings())
        workflow = workflow_api._workflow
        workflow.execution_settings = ExecutionSettings()
        workflow._prepare_dag(
            forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True
        )
        workflow._build_dag()
        jobs = [job for level in workflow.dag.toposorted() for job in level]
        for job in jobs:
            for f in job.output:
                target = workdir / f
                if f.is_directory:
                    target.mkdir(parents=True, exist_ok=True)
                    (target / ".placeholder").touch()
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.touch()
            workflow.async_run(workflow.persistence.finished(job))
        return len(jobs)


def report(name: str, runs: list[tuple[float, float]]) -> None:
    """Wall time (what a user waits) and CPU time (what does not depend on other load)."""
    wall, cpu = zip(*runs)
    shown = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs)
    print(
        f"{name}: median {statistics.median(wall):.1f} s wall, {statistics.median(cpu):.1f} s "
        f"CPU (runs, wall/CPU: {shown})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=PAPER)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", help="also pass --profile (e.g. profiles/slurm)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    extra = ["--profile", str(ROOT / args.profile)] if args.profile else []
    with tempfile.TemporaryDirectory(prefix="dag-speed-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        runs = []
        for _ in range(args.repeats):
            wall, cpu, out = snakemake(workdir, args.configfile, "-n", "--quiet", "rules", *extra)
            runs.append((wall, cpu))
        jobs = next(line.split()[1] for line in out.splitlines() if line.startswith("total"))
        report(f"dry run ({jobs} jobs)", runs)

        print(f"placeholders and metadata of {build_as_if_run(workdir, args.configfile)} jobs")
        runs = []
        for _ in range(args.repeats):
            wall, cpu, out = snakemake(workdir, args.configfile, "-n", *extra)
            if "Nothing to be done" not in out:
                raise SystemExit(f"the rerun is not a no-op:\n{out[-3000:]}")
            runs.append((wall, cpu))
        report("no-op rerun", runs)


if __name__ == "__main__":
    main()
