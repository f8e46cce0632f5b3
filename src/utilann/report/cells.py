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
    """SIGNIFICANCE rows as ``{key: markers}``: the markers of every baseline a cell was tested
    against, in row order (the main baseline's "+" / "-" first, then the second baseline's
    dagger: "+†"), "" when none is significant."""
    if significance is None or significance.empty:
        return {}
    markers: dict[Key, str] = {}
    for r, d, s, m, mark in significance[[*KEY_COLUMNS, "marker"]].itertuples(index=False):
        key = (str(r), str(d), str(s), str(m))
        markers[key] = markers.get(key, "") + str(mark or "")
    return markers


def concat_metrics(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Several METRICS tables as one (an empty METRICS table when there are none)."""
    if not frames:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "value"])
    return pd.concat(list(frames), ignore_index=True)


def target_label(dataset: str, split: str) -> str:
    return f"{dataset}/{split}"


def significance_note(
    baseline: str | None,
    alpha: float,
    second: Mapping[str, Sequence[str]] | None = None,
    second_markers: Sequence[str] = ("†", "†"),
) -> str:
    if not baseline:
        return "No significance test (no baseline run)."
    note = (
        f"Values in %. Markers + / - : significantly better / worse than {baseline} (two-sided "
        f"paired t-test over queries, p < {alpha:g})"
    )
    if second:
        better, worse = second_markers
        shown = better if better == worse else f"{better} / {worse}"
        pairs = "; ".join(f"{', '.join(runs)} against {b}" for b, runs in second.items() if runs)
        note += f"; {shown}: significantly different from the run's second baseline ({pairs})"
    return note + "; best value of each column in bold."


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
