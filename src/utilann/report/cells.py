"""Cell lookups shared by every table and figure: METRICS and SIGNIFICANCE rows by key.

A key is ``(run, dataset, split, measure)``, the identity of one aggregate figure in the
experiment's METRICS table; SIGNIFICANCE rows (:mod:`utilann.significance`) carry the marker of
the same key. Tables are grids of such keys (:func:`grid`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

Key = tuple[str, str, str, str]  # (run, dataset, split, measure)
KEY_COLUMNS = ["run", "dataset", "split", "measure"]


def metric_values(metrics: pd.DataFrame) -> dict[Key, float]:
    """METRICS rows as ``{key: value}``; a repeated key is an error (two rows, one cell)."""
    dup = metrics.duplicated(KEY_COLUMNS)
    if dup.any():
        raise ValueError(
            "metrics have repeated (run, dataset, split, measure) rows, e.g. "
            f"{metrics[dup].iloc[0][KEY_COLUMNS].to_dict()}"
        )
    return {
        (str(r), str(d), str(s), str(m)): float(v)
        for r, d, s, m, v in metrics[[*KEY_COLUMNS, "value"]].itertuples(index=False)
    }


def significance_markers(significance: pd.DataFrame | None) -> dict[Key, str]:
    """SIGNIFICANCE rows as ``{key: marker}`` ("+", "-" or "")."""
    if significance is None or significance.empty:
        return {}
    return {
        (str(r), str(d), str(s), str(m)): str(mark or "")
        for r, d, s, m, mark in significance[[*KEY_COLUMNS, "marker"]].itertuples(index=False)
    }


def concat_metrics(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several METRICS tables as one (an empty METRICS table when there are none)."""
    if not frames:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "value"])
    return pd.concat(list(frames), ignore_index=True)


def target_label(dataset: str, split: str) -> str:
    return f"{dataset}/{split}"


def significance_note(baseline: str | None, alpha: float) -> str:
    if not baseline:
        return "No significance test (no baseline run)."
    return (
        f"Values in %. Markers + / - : significantly better / worse than {baseline} (two-sided "
        f"paired t-test over queries, p < {alpha:g}); best value of each column in bold."
    )


def grid(
    values: Mapping[Key, float],
    markers: Mapping[Key, str],
    rows: Sequence[Any],
    columns: Sequence[Any],
    key: Callable[[Any, Any], Key],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, markers) frames of ``rows`` x ``columns``; ``key(row, column)`` names a cell."""
    data = [[values.get(key(r, c), math.nan) for c in columns] for r in rows]
    marks = [[markers.get(key(r, c), "") for c in columns] for r in rows]
    return pd.DataFrame(data, columns=columns), pd.DataFrame(marks, columns=columns)


def present_runs(values: Mapping[Key, float], runs: Sequence[str]) -> list[str]:
    """``runs`` in the given order, without the ones that have no value at all."""
    have = {k[0] for k in values}
    return [r for r in runs if r in have]
