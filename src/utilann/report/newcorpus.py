"""The report's "new corpus" tables: generated queries, annotation outcomes, runs, the human share.

* :func:`generated_queries_table` - candidates kept and removed by each filter;
* :func:`source_annotation_table` - per strategy, what the annotator did with the generated
  queries, including how often it chose the passage a question was written from;
* :func:`baseline_table` - every run's primary measure against the zero-shot backbone and BM25;
* :func:`human_share_table` - the curriculum stage 2 at each human share, random against
  active selection of the labelled queries.

Pure functions of the pipeline's own tables (GENERATED_QUERIES, LABELS, pseudo QRELS, the
annotation report, METRICS), unit-tested without Snakemake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann.labels import derive_positives
from utilann.newcorpus.filters import HELDOUT, KEPT, STATUSES
from utilann.report.cells import grid, metric_values, present_runs, significance_markers
from utilann.report.figures import cl_ratio_runs
from utilann.report.table import ReportTable

FILTER_LABELS = {
    "empty": "no question in the reply",
    "too_short": "too short",
    "too_long": "too long",
    "self_check": "LLM self-check said no",
    "duplicate": "duplicate",
    "round_trip": "source passage not in the BM25 top k",
}
HELDOUT_LABEL = "held out: the evaluation split (newcorpus.heldout)"


def generated_queries_table(candidates: pd.DataFrame, *, notes: Sequence[str] = ()) -> ReportTable:
    """Candidates generated, removed by each filter (in filter order), kept, and the split."""
    generated = candidates[candidates["origin"] == "generated"]
    counts = generated["status"].value_counts()
    total = len(generated)
    rows = [("generated", "passages sampled = questions asked", total)]
    rows += [
        ("removed", FILTER_LABELS[s], int(counts.get(s, 0)))
        for s in STATUSES
        if s not in (KEPT, HELDOUT)
    ]
    if counts.get(HELDOUT, 0):
        rows.append(("held out", HELDOUT_LABEL, int(counts[HELDOUT])))
    rows.append(("kept", "generated questions kept", int(counts.get(KEPT, 0))))
    unlabelled = int((candidates["origin"] == "unlabelled").sum())
    rows.append(("added", "unlabelled queries of the dataset", unlabelled))
    rows.append(("split", "training queries", int((candidates["status"] == KEPT).sum())))
    data = pd.DataFrame(
        [(n, n / total if total else float("nan")) for *_, n in rows],
        columns=["queries", "% of generated"],
        index=pd.MultiIndex.from_tuples([r[:2] for r in rows], names=["stage", "what"]),
    )
    return ReportTable(
        title="New corpus: generated queries and filters",
        values=data,
        formats={"queries": "int", "% of generated": "pct"},
        notes=list(notes),
        bold_best=False,
    )


def source_recall(
    labels: pd.DataFrame, qrels: pd.DataFrame, strategy: str, threshold: float | None
) -> tuple[float, float]:
    """(share of generated queries whose source passage is in the pool, share of those where
    ``strategy`` made it a positive)."""
    sources = set(zip(qrels["query_id"].astype(str), qrels["doc_id"].astype(str), strict=True))
    rows = labels[labels["strategy"] == strategy]
    generated = set(qrels["query_id"].astype(str)) & set(rows["query_id"].astype(str))
    shown = {
        pair
        for pair in zip(rows["query_id"].astype(str), rows["doc_id"].astype(str), strict=True)
        if pair in sources
    }
    positives = derive_positives(rows, strategy, threshold)
    chosen = set(
        zip(positives["query_id"].astype(str), positives["doc_id"].astype(str), strict=True)
    )
    in_pool = len(shown) / len(generated) if generated else float("nan")
    recall = len(shown & chosen) / len(shown) if shown else float("nan")
    return in_pool, recall


ANNOTATION_COLUMNS = {
    "queries": "int",
    "#pos/query": "float",
    "no positive": "int",
    "source in pool": "pct",
    "source chosen": "pct",
    "failed parses": "int",
}


def source_annotation_table(
    report: pd.DataFrame,
    labels: pd.DataFrame,
    qrels: pd.DataFrame,
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Per annotation report row (strategy, UtilRank per k): the outcome on the new split."""
    rows = []
    for r in report.itertuples(index=False):
        threshold = None if pd.isna(r.threshold) else float(r.threshold)
        in_pool, chosen = source_recall(labels, qrels, str(r.strategy), threshold)
        rows.append([r.queries, r.avg_positives, r.empty_queries, in_pool, chosen, r.failed_parses])
    data = pd.DataFrame(
        rows,
        columns=list(ANNOTATION_COLUMNS),
        index=pd.Index(report["name"].astype(str).tolist(), name="strategy"),
        dtype=float,
    )
    return ReportTable(
        title="New corpus: annotation of the generated split",
        values=data,
        formats=ANNOTATION_COLUMNS,
        notes=list(notes),
        bold_best=False,
    )


def baseline_table(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    runs: Sequence[str],
    target: tuple[str, str],
    measure: str,
    *,
    baselines: Sequence[str] = ("zeroshot", "bm25"),
    notes: Sequence[str] = (),
) -> ReportTable:
    """Every run's ``measure`` on ``target`` and its difference to each baseline (points)."""
    values, markers = metric_values(metrics), significance_markers(significance)
    rows = present_runs(values, runs)
    key = (target[0], target[1], measure)
    data, marks = grid(values, markers, rows, [measure], lambda r, m: (r, *key))
    for base in baselines:
        ref = values.get((base, *key))
        column = f"vs {base}"
        data[column] = [
            values.get((r, *key), float("nan")) - ref if ref is not None else float("nan")
            for r in rows
        ]
        marks[column] = ""
    data.index = marks.index = pd.Index(rows, name="run")
    return ReportTable(
        title=f"New corpus: {measure} on {target[0]}/{target[1]} against the baselines",
        values=data,
        markers=marks,
        notes=list(notes),
    )


def human_share_table(
    specs: Mapping[str, Mapping[str, Any]],
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    target: tuple[str, str],
    measure: str,
    *,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Rows: (parent run, human share %); columns: each way of choosing the labelled queries
    (random, then the active selectors), plus the parent without human labels (0 %)."""
    curves = cl_ratio_runs(specs)
    cells: dict[tuple[str, float], dict[str, str]] = {}
    selectors: list[str] = []
    for runs in curves.values():
        for run, ratio in runs.items():
            spec = specs[run]
            selection = str(spec.get("query_selection", "random"))
            if selection not in selectors:
                selectors.append(selection)
            cells.setdefault((str(spec["init_from"]), ratio), {})[selection] = run
    selectors.sort(key=lambda s: (s != "random", s))
    keys = sorted(cells)
    values, markers = metric_values(metrics), significance_markers(significance)
    columns = ["0 % (parent)", *selectors]

    def key(row: tuple[str, float], column: str) -> tuple[str, str, str, str]:
        run = row[0] if column == columns[0] else cells[row].get(column, "")
        return (run, target[0], target[1], measure)

    data, marks = grid(values, markers, keys, columns, key)
    data.index = marks.index = pd.MultiIndex.from_tuples(
        [(parent, f"{ratio:g} %") for parent, ratio in keys], names=["stage 1", "human share"]
    )
    return ReportTable(
        title=f"New corpus: human share of the curriculum, random vs active ({measure})",
        values=data,
        markers=marks,
        notes=list(notes),
        best_by="row",
    )


def has_human_share(specs: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether some curriculum run exists (the human-share table has a row)."""
    return bool(cl_ratio_runs(specs))
