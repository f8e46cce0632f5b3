"""The paper's Tables 1-5 for this experiment, as :class:`~utilann.report.table.ReportTable`.

Each builder is a pure function of the pipeline's own tables: METRICS rows (run, dataset,
split, measure, value) from retrieval evaluation and RAG scoring, SIGNIFICANCE rows for the
+/- markers, and the annotation stage's ANNOTATION_REPORT. Values in METRICS are fractions;
the tables show them in percent, as the paper does. Table 6 is :mod:`utilann.report.controlled`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann.report.cells import (
    Key,
    grid,
    metric_values,
    present_runs,
    significance_markers,
    target_label,
)
from utilann.report.table import ReportTable


def _runs_by_target(
    values: Mapping[Key, float],
    markers: Mapping[Key, str],
    runs: Sequence[str],
    columns: Sequence[tuple[str, str, str]],
    title: str,
    notes: Sequence[str],
    labels: Sequence[tuple[str, str]] | None = None,
) -> ReportTable:
    """A runs x (dataset/split, measure) table: Tables 2 and 4/5 share this layout.

    ``labels`` are the shown (group, column) names of ``columns`` (default: the target's
    ``dataset/split`` and the measure).
    """
    rows = present_runs(values, runs)
    data, marks = grid(values, markers, rows, columns, lambda r, c: (r, *c))
    if labels is None:
        labels = [(target_label(d, s), m) for d, s, m in columns]
    shown = pd.MultiIndex.from_tuples(list(labels)) if columns else []
    data.columns = marks.columns = shown
    data.index = marks.index = pd.Index(rows, name="run")
    return ReportTable(title=title, values=data, markers=marks, notes=list(notes))


# --- Table 2/3: retrieval -----------------------------------------------------------------


def retrieval_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    measures: Mapping[tuple[str, str], Sequence[str]],
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 2: runs x (dataset/split, measure), every evaluation target and its measures.

    Args:
        metrics: METRICS rows of the retrieval evaluation.
        significance: SIGNIFICANCE rows (markers), or None.
        runs: row order (runs without any value are left out).
        measures: ``{(dataset, split): [measure, ...]}`` in column order.
    """
    values, markers = metric_values(metrics), significance_markers(significance)
    columns = [(d, s, m) for (d, s), ms in measures.items() for m in ms]
    return _runs_by_target(
        values,
        markers,
        runs,
        columns,
        "Table 2: retrieval, every run on every evaluation target",
        notes,
    )


def dataset_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    targets: Sequence[tuple[str, str]],
    measure: str,
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 3: one measure (nDCG@10) per dataset (rows) and run (columns), plus the average.

    The average of a run is taken over the targets it has a value for; a run missing from some
    target gets no average (it would not be comparable).
    """
    values, markers = metric_values(metrics), significance_markers(significance)
    cols = present_runs(values, runs)
    data, marks = grid(values, markers, list(targets), cols, lambda t, r: (r, t[0], t[1], measure))
    data.index = marks.index = pd.Index([target_label(*t) for t in targets], name=measure)
    if len(targets) > 1 and cols:
        average = data.mean(axis=0, skipna=False)
        data.loc["Average"] = average
        marks.loc["Average"] = ""
    return ReportTable(
        title=f"Table 3: {measure} per dataset",
        values=data,
        markers=marks,
        notes=list(notes),
        best_by="row",
    )


# --- Tables 4/5: RAG -----------------------------------------------------------------------


def rag_columns(
    targets: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str, str, str], tuple[str, str]]]:
    """The RAG table's columns as (metrics key (dataset, split, measure), shown label).

    R@k ("Recall") comes first, then the answer measures. Targets answered by several
    generators (``rag.generators``) share one column group, as the paper's Tables 4/5: the
    Recall once (every generator reads the same passages), then each generator's measures
    (``llama BLEU-3`` ... ``qwen BLEU-3`` ...).
    """
    columns = []
    recall_shown = set()
    for t in targets:
        generator = t.get("generator")
        group = target_label(t["dataset"], t.get("base", t["split"]) if generator else t["split"])
        recall = f"R@{int(t['top_k'])}"
        if generator is None:
            names = dict.fromkeys([recall, *t["measures"]])
            columns += [((t["dataset"], t["split"], m), (group, m)) for m in names]
            continue
        if group not in recall_shown:
            recall_shown.add(group)
            columns.append(((t["dataset"], t["split"], recall), (group, "Recall")))
        columns += [
            ((t["dataset"], t["split"], m), (group, f"{generator} {m}"))
            for m in dict.fromkeys(t["measures"])
        ]
    return columns


def rag_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    targets: Sequence[Mapping[str, Any]],
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Tables 4/5: runs x (QA split, measure): R@k of the passages fed in, then EM/F1/...

    ``targets`` are the ``rag.targets`` entries (dataset, split, top_k, measures, and the
    generator label and base name with ``rag.generators``). A measure that was not computed
    (BERTScore without a model) is dropped from the columns.
    """
    values, markers = metric_values(metrics), significance_markers(significance)
    computed = {k[1:] for k in values}
    chosen = [(key, shown) for key, shown in rag_columns(targets) if key in computed]
    return _runs_by_target(
        values,
        markers,
        runs,
        [key for key, _ in chosen],
        "Tables 4/5: RAG answer quality from each run's top-k passages",
        notes,
        labels=[shown for _, shown in chosen],
    )


# --- Table 1: annotation -------------------------------------------------------------------

ANNOTATION_COLUMNS = {
    "precision": ("Precision", "pct"),
    "recall": ("Recall", "pct"),
    "avg_positives": ("#pos/query", "float"),
    "queries": ("queries", "int"),
    "empty_queries": ("no positive", "int"),
    "failed_parses": ("failed parses", "int"),
    "prompt_tokens": ("prompt tokens", "int"),
    "output_tokens": ("output tokens", "int"),
    "wall_seconds": ("LLM seconds", "float"),
}


def annotation_table(report: pd.DataFrame, *, notes: Sequence[str] = ()) -> ReportTable:
    """Table 1: precision / recall of each strategy's positives against the human positives.

    ``report`` is the annotation stage's ANNOTATION_REPORT (one row per strategy, UtilRank once
    per threshold, named ``utilrank@<k>``); columns it lacks are left out.
    """
    present = {k: v for k, v in ANNOTATION_COLUMNS.items() if k in report.columns}
    data = report[list(present)].astype(float).copy()
    data.columns = [label for label, _ in present.values()]
    data.index = pd.Index(report["name"].astype(str).tolist(), name="strategy")
    return ReportTable(
        title="Table 1: LLM annotation quality against the human positives",
        values=data,
        formats={label: fmt for label, fmt in present.values()},
        notes=list(notes),
        bold_best=False,
    )


# --- Table 9: top-k answer accuracy --------------------------------------------------------


def accuracy_targets(evaluation: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Evaluation targets measured with ``Acc@k`` (Table 9), each with its cutoffs in order."""
    from utilann.evaluation import accuracy_cutoff

    out = []
    for t in evaluation:
        cutoffs = sorted(k for k in map(accuracy_cutoff, t["measures"]) if k is not None)
        if cutoffs:
            out.append({**t, "cutoffs": cutoffs})
    return out


def accuracy_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    targets: Sequence[Mapping[str, Any]],
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 9: runs x Top-k answer accuracy (``Acc@k`` shown as the paper's "Top20" ...)."""
    values, markers = metric_values(metrics), significance_markers(significance)
    columns = [(t["dataset"], t["split"], f"Acc@{k}") for t in targets for k in t["cutoffs"]]
    table = _runs_by_target(
        values,
        markers,
        runs,
        columns,
        "Table 9: top-k retrieval accuracy (a top-k passage contains a gold answer)",
        notes,
    )
    if columns:
        shown = pd.MultiIndex.from_tuples(
            [(target_label(d, s), m.replace("Acc@", "Top")) for d, s, m in columns]
        )
        table.values.columns = shown
        assert table.markers is not None
        table.markers.columns = shown
    return table


# --- Table 13: RAG with top 1 vs top k -----------------------------------------------------


def main_rag_targets(targets: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Tables 4/5's targets: a split answered with several top-k (Table 13) shows there with
    its first-listed top-k only (the paper's Table 4 is MS MARCO QA with top 1)."""
    first: dict[tuple[str, str], Any] = {}
    for t in targets:
        first.setdefault((t["dataset"], t.get("source_split", t["split"])), t["top_k"])
    return [
        t for t in targets if t["top_k"] == first[(t["dataset"], t.get("source_split", t["split"]))]
    ]


def topk_groups(targets: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """RAG targets answering the same split with different top-k (Table 13), by top-k (and
    generator, for targets answered by several)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for t in targets:
        groups.setdefault((t["dataset"], t.get("source_split", t["split"])), []).append(t)
    return [
        sorted(group, key=lambda t: (t["top_k"], t.get("generator") or ""))
        for group in groups.values()
        if len({t["top_k"] for t in group}) > 1
    ]


def topk_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    groups: Sequence[Sequence[Mapping[str, Any]]],
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 13: (split, top-k, run) rows x measure columns; "Recall" is R@k of the k passages.

    Each group is one split answered with several top-k (MS MARCO QA with 1 and 5). Targets of
    one top-k answered by several generators share a row: Recall once, then each generator's
    measures (``llama BLEU-3`` ...), as the paper's Llama and Qwen column groups. A measure
    computed for no row (BERTScore without a model) is dropped from the columns.
    """
    values, markers = metric_values(metrics), significance_markers(significance)

    def shown(t: Mapping[str, Any], measure: str) -> str:
        return f"{t['generator']} {measure}" if t.get("generator") else measure

    columns = ["Recall"]
    columns += dict.fromkeys(shown(t, m) for g in groups for t in g for m in t["measures"])
    records, marks, index = [], [], []
    for group in groups:
        dataset, source = group[0]["dataset"], group[0].get("source_split", group[0]["split"])
        for k in dict.fromkeys(t["top_k"] for t in group):
            same_k = [t for t in group if t["top_k"] == k]
            for run in runs:
                cells = {"Recall": (run, dataset, same_k[0]["split"], f"R@{k}")}
                for t in same_k:
                    cells.update(
                        {shown(t, m): (run, dataset, t["split"], m) for m in t["measures"]}
                    )
                if not any(c in values for c in cells.values()):
                    continue
                records.append({col: values.get(c, math.nan) for col, c in cells.items()})
                marks.append({col: markers.get(c, "") for col, c in cells.items()})
                index.append((target_label(dataset, source), str(k), run))
    data = pd.DataFrame(records, columns=columns).dropna(axis=1, how="all")
    marked = pd.DataFrame(marks, columns=columns).reindex(columns=data.columns).fillna("")
    labels = (
        pd.MultiIndex.from_tuples(index, names=["split", "top-k", "run"])
        if index
        else pd.Index([], name="run")
    )
    data.index = marked.index = labels
    return ReportTable(
        title="Table 13: RAG with the top 1 vs the top k passages",
        values=data,
        markers=marked,
        notes=list(notes),
    )
