"""Paired two-sided t-tests of runs against a baseline, per query (the paper's +/- markers).

The paper marks a result with +/- when a two-sided paired t-test over queries against the Human
run gives p < 0.05 (and with a dagger against REPLUG: call :func:`paired_ttests` once per
baseline, with its own markers). Only per-query measures can be tested; corpus-level BLEU has
no per-query value and is never tested, as in the paper.

Query alignment: for each (dataset, split, measure), a run and the baseline are compared on the
union of the queries either of them has a value for; a query missing from one side counts as
0 (``fill_value``). That is the right reading for retrieval measures (a query the run retrieved
nothing for scores 0, and :func:`utilann.evaluation.evaluate_run` already writes those zeros)
and for answer measures (no answer is a wrong answer). ``fill_value=None`` compares on the
queries both sides have instead.

Degenerate cases never produce NaN: when every paired difference is identical (up to 1e-12 of
floating-point noise) the t statistic is undefined; identical scores give t = 0, p = 1 (no
difference), a constant non-zero shift gives scipy's limit t = +/-inf, p = 0. Fewer than two
paired queries give t = 0, p = 1.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from . import schemas

log = logging.getLogger(__name__)

GROUP = ["dataset", "split", "measure"]
PER_QUERY_COLUMNS = ["run", *GROUP, "query_id", "value"]
_CONSTANT_TOLERANCE = 1e-12


def paired_ttest(values: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test, with the degenerate cases of the module doc."""
    if len(values) < 2:
        return 0.0, 1.0
    diff = values - baseline
    tolerance = _CONSTANT_TOLERANCE * max(1.0, float(np.abs(diff).max()))
    if np.ptp(diff) <= tolerance:  # constant up to floating-point noise
        mean = float(diff.mean())
        return (0.0, 1.0) if abs(mean) <= tolerance else (float(np.sign(mean) * np.inf), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # precision loss on near-constant diffs
        result = stats.ttest_rel(values, baseline)
    return float(result.statistic), float(result.pvalue)


def paired_ttests(
    per_query: pd.DataFrame,
    baseline: str,
    *,
    alpha: float = 0.05,
    fill_value: float | None = 0.0,
    markers: tuple[str, str] = ("+", "-"),
) -> pd.DataFrame:
    """Test every run against ``baseline`` for each (dataset, split, measure).

    Args:
        per_query: long table with columns run, dataset, split, measure, query_id, value.
        baseline: name of the baseline run (e.g. ``human``).
        alpha: significance level.
        fill_value: value of a query missing from one side (None: compare common queries).
        markers: (better, worse) markers of a significant difference.

    Returns:
        A SIGNIFICANCE table, one row per (run, dataset, split, measure); ``marker`` is
        ``markers[0]`` / ``markers[1]`` when p < alpha and the run is better / worse, else "".
    """
    missing = [c for c in PER_QUERY_COLUMNS if c not in per_query.columns]
    if missing:
        raise ValueError(f"per-query table lacks column(s) {missing}; expected {PER_QUERY_COLUMNS}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    data = per_query[PER_QUERY_COLUMNS].astype({"run": str, "query_id": str})
    duplicated = data.duplicated(["run", *GROUP, "query_id"])
    if duplicated.any():
        example = data[duplicated].iloc[0].to_dict()
        raise ValueError(
            "per-query table has repeated (run, dataset, split, measure, query) rows, "
            f"e.g. {example}"
        )
    if baseline not in set(data["run"]):
        raise ValueError(
            f"baseline run {baseline!r} has no per-query values; runs: {sorted(set(data['run']))}"
        )

    rows = []
    for (dataset, split, measure), group in data.groupby(GROUP, sort=True):
        table = group.pivot(index="query_id", columns="run", values="value")
        if baseline not in table.columns:
            log.warning(
                "%s/%s %s: no values for baseline %r; not tested", dataset, split, measure, baseline
            )
            continue
        for run in sorted(c for c in table.columns if c != baseline):
            pair = table[[run, baseline]].dropna(how="all")
            pair = pair.dropna() if fill_value is None else pair.fillna(fill_value)
            values, base = pair[run].to_numpy(float), pair[baseline].to_numpy(float)
            t, p = paired_ttest(values, base)
            mean, base_mean = (
                (float(values.mean()), float(base.mean())) if len(pair) else (0.0, 0.0)
            )
            delta = mean - base_mean
            significant = bool(p < alpha and delta != 0)
            marker = (markers[0] if delta > 0 else markers[1]) if significant else ""
            rows.append(
                (
                    run,
                    baseline,
                    dataset,
                    split,
                    measure,
                    len(pair),
                    mean,
                    base_mean,
                    delta,
                    t,
                    p,
                    significant,
                    marker,
                )
            )
    return pd.DataFrame(rows, columns=schemas.SIGNIFICANCE.names)
