"""The demo's results against a reference run of it (e.g. made before a refactoring).

Skipped unless ``UTILANN_REFERENCE_RESULTS`` points at a reference ``results/demo`` directory;
the results compared are ``UTILANN_RESULTS`` (default: this checkout's ``results/demo``, as
``make demo`` leaves them). Label files, training sets and the metrics table are compared as
tables with a tolerance (:mod:`utilann.regression`), never byte by byte::

    make demo
    export UTILANN_REFERENCE_RESULTS=/path/to/reference/results/demo
    .venv/bin/pytest tests/e2e/test_demo_regression.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from utilann.regression import compare_results

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
REFERENCE = os.environ.get("UTILANN_REFERENCE_RESULTS")
RESULTS = Path(os.environ.get("UTILANN_RESULTS", REPO / "results" / "demo"))
# Metrics are means over a few hundred queries: a real change moves them by >= 1e-3.
ATOL = float(os.environ.get("UTILANN_REGRESSION_ATOL", "1e-6"))


@pytest.mark.skipif(not REFERENCE, reason="UTILANN_REFERENCE_RESULTS is not set")
def test_demo_results_match_the_reference():
    if not (RESULTS / "metrics.parquet").exists():
        pytest.skip(f"no demo results at {RESULTS} (run `make demo`)")
    differences = compare_results(REFERENCE, RESULTS, atol=ATOL, rtol=0.0)
    assert not differences, "\n".join(str(d) for d in differences)
