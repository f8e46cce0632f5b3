"""Opt-in (UTILANN_RESOLVE_CHECK=1, needs PyPI, ~2 min per set): the requirement sets resolve.

requirements/check.py resolves each set with pip's resolver (dry run) in a throwaway venv:
the GPU job set and the controller each resolve, the two together do not.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("UTILANN_RESOLVE_CHECK") != "1",
        reason="opt-in: set UTILANN_RESOLVE_CHECK=1 (resolves against PyPI, minutes per set)",
    ),
]


def test_gpu_and_controller_sets_resolve_apart_not_together():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "requirements/check.py"),
            "gpu",
            "controller",
            "controller+gpu",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gpu: resolves (PyPI)" in proc.stdout and "vllm 0.33.0" in proc.stdout
    assert "controller+gpu: does not resolve" in proc.stdout
