"""The jobs' software environments agree with the tested requirement sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))


def pins(lines) -> dict[str, str]:
    """{normalised name: version} of the `name==version` lines."""
    found = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            found[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return found


def pip_section(path: Path) -> list[str]:
    spec = yaml.safe_load(path.read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


def requirements(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_gpu_env_is_the_gpu_requirement_set():
    assert pip_section(ROOT / "envs/gpu.yaml") == requirements(ROOT / "requirements/gpu.txt")


@pytest.mark.parametrize("env", ["core", "llm", "train"])
def test_cpu_envs_pin_what_the_cpu_lock_tested(env):
    lock = pins((ROOT / "requirements/cpu.lock").read_text().splitlines())
    for name, version in pins(pip_section(ROOT / f"envs/{env}.yaml")).items():
        assert lock.get(name) == version, f"envs/{env}.yaml pins {name}=={version}"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
def test_envs_build_from_their_copy(env):
    """Snakemake builds an env from a copy under .snakemake/conda: no relative paths."""
    section = pip_section(env)
    assert not any(line.startswith("-e") or "../" in line for line in section)
    assert not any(line.startswith(("snakemake", "snakemake-executor")) for line in section)
    deploy = env.with_name(f"{env.stem}.post-deploy.sh").read_text()
    assert 'pip install --no-deps --no-build-isolation -e "${UTILANN_WORKFLOW_DIR' in deploy


def test_cpu_lock_names_the_pytorch_cpu_index():
    lock = (ROOT / "requirements/cpu.lock").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lock
    assert "torch==2.13.0+cpu" in lock
