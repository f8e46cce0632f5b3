"""The report's tables of the annotator audits (:mod:`utilann.audit`): the false-negative
rate per training dataset, and the injection audit's selection rates against the control."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from utilann.report.table import ReportTable

FALSE_NEGATIVE_COLUMNS = {
    "queries": ("queries", "int"),
    "negatives": ("negatives judged", "int"),
    "judged_useful": ("judged useful", "int"),
    "fn_rate": ("FN rate", "pct"),
    "fn_low": ("95% CI low", "pct"),
    "fn_high": ("95% CI high", "pct"),
    "human_found": ("human positives found", "pct"),
    "unjudged": ("unjudged (failed parse)", "int"),
    "cascade_answers": ("cascade answers", "int"),
}

INJECTION_COLUMNS = {
    "pools": ("pools", "int"),
    "target_rate": ("target selected", "pct"),
    "target_low": ("95% CI low", "pct"),
    "target_high": ("95% CI high", "pct"),
    "control_rate": ("control", "pct"),
    "lift": ("lift", "pct"),
    "only_attack": ("only attacked", "int"),
    "only_control": ("only control", "int"),
    "p_value": ("McNemar p", "float"),
    "human_rate": ("human selected", "pct"),
    "failed_parses": ("failed parses", "int"),
}


def _table(
    title: str,
    data: pd.DataFrame,
    columns: dict[str, tuple[str, str]],
    index: list[str],
    notes: Sequence[str],
    decimals: int = 1,
) -> ReportTable:
    values = data[list(columns)].astype(float).copy()
    values.columns = [label for label, _ in columns.values()]
    values.index = pd.MultiIndex.from_frame(data[index].astype(str))
    return ReportTable(
        title=title,
        values=values,
        formats={label: fmt for label, fmt in columns.values()},
        notes=list(notes),
        decimals=decimals,
        bold_best=False,
    )


def false_negative_table(summary: pd.DataFrame, *, notes: Sequence[str] = ()) -> ReportTable:
    """One row per training dataset/split of the AUDIT_SUMMARY table."""
    return _table(
        "Audit: BM25 hard negatives the judge calls useful (false negatives)",
        summary,
        FALSE_NEGATIVE_COLUMNS,
        ["dataset", "split"],
        notes,
    )


def injection_table(summary: pd.DataFrame, *, notes: Sequence[str] = ()) -> ReportTable:
    """One row per (step, attack) of the INJECTION_SUMMARY table, the control first."""
    return _table(
        "Audit: selection of an irrelevant passage carrying an instruction for the judge",
        summary,
        INJECTION_COLUMNS,
        ["step", "kind", "attack"],
        notes,
        decimals=1,
    )
