"""The command line the benchmarks run the workflow with (imported by dag_speed.py, scale.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snakemake_command(workdir: Path, configfile: Path, *args: str, cores: int = 1) -> list[str]:
    """``python -m snakemake`` on this repository's Snakefile in ``workdir``, this
    interpreter (the benchmark's environment), ``args`` before the config file."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        *args,
        "--configfile",
        str(configfile),
    ]
