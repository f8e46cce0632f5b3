"""Compare an experiment's metrics with the published figures of the reproduction matrix."""

from __future__ import annotations

import pandas as pd

COLUMNS = [
    "run",
    "dataset",
    "split",
    "measure",
    "expected",
    "tolerance",
    "obtained",
    "delta",
    "status",
    "source",
]
KEYS = ["run", "dataset", "split", "measure"]
OPTIONAL = ["source", "experiment"]
ANNOTATION_MEASURES = ("precision", "recall", "avg_positives")
"""The annotation report's columns that paper Table 1 publishes."""


def annotation_metrics(report: pd.DataFrame, dataset: str, split: str) -> pd.DataFrame:
    """The annotation report (one row per strategy, ``utilrank@<k>`` per threshold) as METRICS
    rows: run = the strategy's name, on the annotated training split (paper Table 1)."""
    present = [m for m in ANNOTATION_MEASURES if m in report.columns]
    rows = report.melt(id_vars=["name"], value_vars=present, var_name="measure")
    rows = rows.rename(columns={"name": "run"}).assign(dataset=dataset, split=split)
    return rows[[*KEYS, "value"]].astype({"value": float})


def check(
    metrics: pd.DataFrame, expected: list[dict], experiment: str | None = None
) -> pd.DataFrame:
    """One row per applicable matrix entry: status ``ok`` within tolerance, else ``off``.

    An entry applies when the experiment has its run on its dataset split (and, if the entry
    names an ``experiment``, when that is ``experiment``); if that run and split exist but the
    measure was not computed, the status is ``missing``.
    """
    if not expected:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(expected)
    unknown = set(table.columns) - set(COLUMNS) - set(OPTIONAL)
    if unknown or not set(KEYS + ["expected", "tolerance"]) <= set(table.columns):
        raise ValueError(
            f"reproduction entries need {KEYS + ['expected', 'tolerance']}; "
            f"unknown keys {sorted(unknown)}"
        )
    if "experiment" in table:
        table = table[table["experiment"].isna() | (table["experiment"] == experiment)]
    present = metrics[["run", "dataset", "split"]].drop_duplicates()
    table = table.merge(present, on=["run", "dataset", "split"])
    table = table.merge(metrics[KEYS + ["value"]], on=KEYS, how="left").rename(
        columns={"value": "obtained"}
    )
    table["delta"] = table["obtained"] - table["expected"]
    ok = table["delta"].abs() <= table["tolerance"] + 1e-12
    table["status"] = ok.map({True: "ok", False: "off"}).where(table["obtained"].notna(), "missing")
    if "source" not in table:
        table["source"] = ""
    return table[COLUMNS]
