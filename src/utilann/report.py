"""Tables and figures of the experiment report: the paper's Tables 1-6 and Figure 3, for this data.

Everything here is a pure function of the pipeline's own tables, so it is unit-tested without
Snakemake:

* METRICS rows (run, dataset, split, measure, value) from retrieval evaluation and RAG scoring;
* SIGNIFICANCE rows (:mod:`utilann.significance`) for the +/- markers;
* the ANNOTATION_REPORT table of the annotation stage (Table 1, Figure 3b);
* the resolved settings of each training run (``{run: {key: value}}``, the keys of
  :class:`utilann.train.spec.RunSpec`: ``label_source``, ``loss``, ``init_from``,
  ``query_ratio``, ...), from which the controlled comparisons of Table 6 and the curves of
  Figure 3 are derived.

A table is a :class:`ReportTable` (numbers, markers, per-column format, notes) rendered as a
standalone HTML page (``snakemake --report`` shows HTML results inline) or as GitHub Markdown
(``summary.md``). Figures are PNG files drawn with matplotlib (imported only when plotting).

Values in METRICS are fractions; the tables show them in percent, as the paper does.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MISSING = "–"
"""Shown for a value that does not exist (run not evaluated there, measure not computed)."""

FORMATS = ("pct", "float", "int")
LABEL_NAMES = {"human": "Human", "relsel": "RelSel", "utilsel": "UtilSel", "utilrank": "UtilRank"}

Key = tuple[str, str, str, str]  # (run, dataset, split, measure)


# --- the table object ----------------------------------------------------------------------


@dataclass
class ReportTable:
    """Numbers with their significance markers, ready to render.

    Attributes:
        key: file stem of the rendered table (``table2_retrieval``).
        title: heading (``Table 2: retrieval ...``).
        values: numeric cells; the index holds the row labels (an Index, or a MultiIndex shown
            as several leading columns), the columns are labels or 2-level tuples (a two-row
            header, e.g. dataset/split over measure).
        markers: same shape as ``values``; "+" / "-" (significantly better / worse than the
            baseline) or "". None = no markers.
        formats: column -> ``pct`` (fraction shown x100), ``float`` or ``int``; ``pct`` when a
            column is not listed.
        notes: sentences printed under the table.
        decimals: decimals of ``pct`` and ``float`` cells.
        bold_best: bold the highest value of each ``pct`` column (when it has two or more values).
        best_by: ``column`` (runs are rows) or ``row`` (runs are columns, as in Table 3).
    """

    key: str
    title: str
    values: pd.DataFrame
    markers: pd.DataFrame | None = None
    formats: Mapping[Any, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    decimals: int = 1
    bold_best: bool = True
    best_by: str = "column"

    def __post_init__(self) -> None:
        if self.best_by not in ("column", "row"):
            raise ValueError(f"best_by must be 'column' or 'row', got {self.best_by!r}")
        unknown = {f for f in self.formats.values() if f not in FORMATS}
        if unknown:
            raise ValueError(f"unknown column format(s) {sorted(unknown)}; expected {FORMATS}")
        if self.markers is not None and self.markers.shape != self.values.shape:
            raise ValueError("markers must have the shape of values")

    def column_format(self, column: Any) -> str:
        return self.formats.get(column, "pct")

    def text(self, row: int, col: int) -> str:
        """The formatted number of cell (row, col), without marker or emphasis."""
        value = self.values.iat[row, col]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        fmt = self.column_format(self.values.columns[col])
        if fmt == "int":
            return f"{int(round(float(value))):,}"
        scale = 100.0 if fmt == "pct" else 1.0
        return f"{float(value) * scale:.{self.decimals}f}"

    def marker(self, row: int, col: int) -> str:
        if self.markers is None:
            return ""
        value = self.markers.iat[row, col]
        return (
            "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        )

    def best(self) -> pd.DataFrame:
        """Cells shown in bold: the (rounded) maximum of each pct column (or row, see
        ``best_by``), unless all its values are equal."""
        mask = pd.DataFrame(False, index=self.values.index, columns=self.values.columns)
        if not self.bold_best:
            return mask
        pct = [j for j, c in enumerate(self.values.columns) if self.column_format(c) == "pct"]
        shown = (
            self.values.iloc[:, pct]
            .apply(pd.to_numeric, errors="coerce")
            .mul(100)
            .round(self.decimals)
        )
        lines = shown.T if self.best_by == "row" else shown
        for j in range(lines.shape[1]):
            line = lines.iloc[:, j]
            if line.notna().sum() >= 2 and line.max() > line.min():  # all equal: no best
                hits = (line == line.max()).to_numpy()
                if self.best_by == "row":
                    mask.iloc[j, pct] = hits
                else:
                    mask.iloc[:, pct[j]] = hits
        return mask

    @property
    def empty(self) -> bool:
        return self.values.empty


def _label(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _row_labels(table: ReportTable) -> tuple[list[str], list[tuple[str, ...]]]:
    index = table.values.index
    if isinstance(index, pd.MultiIndex):
        names = [str(n) if n is not None else "" for n in index.names]
        return names, [tuple(map(str, t)) for t in index]
    return [str(index.name or "")], [(str(v),) for v in index]


# --- rendering -----------------------------------------------------------------------------

_CSS = """
body {
  font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1em; color: #222;
}
h3 { font-size: 1.05em; margin: 0 0 .6em 0; }
table { border-collapse: collapse; font-size: .9em; }
th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; }
thead th { border-bottom: 2px solid #555; background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.row { text-align: left; font-weight: normal; white-space: nowrap; }
td b { color: #000; }
sup.plus { color: #1a7f37; } sup.minus { color: #c62828; }
p.note { font-size: .85em; color: #555; max-width: 60em; margin: .3em 0; }
"""


def _marker_html(marker: str) -> str:
    if not marker:
        return ""
    css = "plus" if marker.startswith("+") else "minus" if marker.startswith("-") else ""
    shown = marker.replace("-", "\u2212")  # a real minus sign: a hyphen is hard to see raised
    return f'<sup class="{css}">{html.escape(shown)}</sup>'


def render_html(table: ReportTable, standalone: bool = True) -> str:
    """The table as HTML: a complete page (for ``snakemake --report``) or a fragment."""
    names, rows = _row_labels(table)
    columns = list(table.values.columns)
    two_level = bool(columns) and all(isinstance(c, tuple) and len(c) == 2 for c in columns)
    out = [f"<h3>{html.escape(table.title)}</h3>", "<table>", "<thead>"]
    if two_level:
        out.append("<tr>" + "".join(f'<th rowspan="2">{html.escape(n)}</th>' for n in names))
        groups: list[tuple[str, int]] = []
        for top, _ in columns:
            if groups and groups[-1][0] == top:
                groups[-1] = (top, groups[-1][1] + 1)
            else:
                groups.append((top, 1))
        out.append(
            "".join(f'<th colspan="{n}">{html.escape(str(top))}</th>' for top, n in groups)
            + "</tr>"
        )
        out.append(
            "<tr>" + "".join(f"<th>{html.escape(str(sub))}</th>" for _, sub in columns) + "</tr>"
        )
    else:
        cells = [*names, *(_label(c) for c in columns)]
        out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
    out.append("</thead>")
    out.append("<tbody>")
    best = table.best()
    for i, labels in enumerate(rows):
        cells = "".join(f'<th class="row">{html.escape(label)}</th>' for label in labels)
        for j in range(len(columns)):
            text = html.escape(table.text(i, j))
            if best.iat[i, j]:
                text = f"<b>{text}</b>"
            cells += f'<td class="num">{text}{_marker_html(table.marker(i, j))}</td>'
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(note)}</p>' for note in table.notes]
    body = "\n".join(out)
    if not standalone:
        return body
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(table.title)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: ReportTable) -> str:
    """The table as a GitHub-flavoured Markdown section (title, table, notes)."""
    names, rows = _row_labels(table)
    header = [*names, *(_label(c) for c in table.values.columns)]
    numeric = len(names)
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(_md_escape(h) for h in header) + " |",
        "|" + "---|" * numeric + "---:|" * len(table.values.columns),
    ]
    best = table.best()
    for i, labels in enumerate(rows):
        cells = [_md_escape(label) for label in labels]
        for j in range(len(table.values.columns)):
            text = table.text(i, j) + table.marker(i, j)
            cells.append(f"**{text}**" if best.iat[i, j] else text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.values.empty:
        lines.append("| (no rows) |" + " |" * len(table.values.columns))
    lines.append("")
    lines += [f"{note}  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_text(text: str, path: str | Path) -> None:
    """Atomically write a text file (HTML page, Markdown summary)."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def summary_markdown(
    title: str,
    tables: Sequence[ReportTable],
    figures: Sequence[tuple[str, str]] = (),
    preamble: Sequence[str] = (),
) -> str:
    """One Markdown document with every table (for terminals: ``less summary.md``)."""
    parts = [f"# {title}", ""]
    parts += [*preamble, ""] if preamble else []
    for table in tables:
        parts.append(render_markdown(table))
    if figures:
        parts.append("### Figures\n")
        parts += [f"- {caption}: `{path}`" for caption, path in figures]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


# --- lookups -------------------------------------------------------------------------------


def _values(metrics: pd.DataFrame) -> dict[Key, float]:
    dup = metrics.duplicated(["run", "dataset", "split", "measure"])
    if dup.any():
        raise ValueError(
            "metrics have repeated (run, dataset, split, measure) rows, e.g. "
            f"{metrics[dup].iloc[0][['run', 'dataset', 'split', 'measure']].to_dict()}"
        )
    return {
        (str(r), str(d), str(s), str(m)): float(v)
        for r, d, s, m, v in metrics[["run", "dataset", "split", "measure", "value"]].itertuples(
            index=False
        )
    }


def _markers(significance: pd.DataFrame | None) -> dict[Key, str]:
    if significance is None or significance.empty:
        return {}
    return {
        (str(r), str(d), str(s), str(m)): str(mark or "")
        for r, d, s, m, mark in significance[
            ["run", "dataset", "split", "measure", "marker"]
        ].itertuples(index=False)
    }


def significance_note(baseline: str | None, alpha: float) -> str:
    if not baseline:
        return "No significance test (no baseline run)."
    return (
        f"Values in %. Markers + / - : significantly better / worse than {baseline} (two-sided "
        f"paired t-test over queries, p < {alpha:g}); best value of each column in bold."
    )


def target_label(dataset: str, split: str) -> str:
    return f"{dataset}/{split}"


def _grid(
    values: Mapping[Key, float],
    markers: Mapping[Key, str],
    rows: Sequence[Any],
    columns: Sequence[Any],
    key: Callable[[Any, Any], Key],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = [[values.get(key(r, c), math.nan) for c in columns] for r in rows]
    marks = [[markers.get(key(r, c), "") for c in columns] for r in rows]
    return pd.DataFrame(data, columns=columns), pd.DataFrame(marks, columns=columns)


def _present_runs(values: Mapping[Key, float], runs: Sequence[str]) -> list[str]:
    """``runs`` in the given order, without the ones that have no value at all."""
    have = {k[0] for k in values}
    return [r for r in runs if r in have]


# --- Table 2/3: retrieval -----------------------------------------------------------------


def _runs_by_target(
    values: Mapping[Key, float],
    markers: Mapping[Key, str],
    runs: Sequence[str],
    columns: Sequence[tuple[str, str, str]],
    key: str,
    title: str,
    notes: Sequence[str],
) -> ReportTable:
    """A runs x (dataset/split, measure) table: Tables 2 and 4/5 share this layout."""
    rows = _present_runs(values, runs)
    data, marks = _grid(values, markers, rows, columns, lambda r, c: (r, *c))
    labels = (
        pd.MultiIndex.from_tuples([(target_label(d, s), m) for d, s, m in columns])
        if columns
        else []
    )
    data.columns = marks.columns = labels
    data.index = marks.index = pd.Index(rows, name="run")
    return ReportTable(key=key, title=title, values=data, markers=marks, notes=list(notes))


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
    values, markers = _values(metrics), _markers(significance)
    columns = [(d, s, m) for (d, s), ms in measures.items() for m in ms]
    return _runs_by_target(
        values,
        markers,
        runs,
        columns,
        "table2_retrieval",
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
    values, markers = _values(metrics), _markers(significance)
    cols = _present_runs(values, runs)
    data, marks = _grid(values, markers, list(targets), cols, lambda t, r: (r, t[0], t[1], measure))
    data.index = marks.index = pd.Index([target_label(*t) for t in targets], name=measure)
    if len(targets) > 1 and cols:
        average = data.mean(axis=0, skipna=False)
        data.loc["Average"] = average
        marks.loc["Average"] = ""
    return ReportTable(
        key="table3_datasets",
        title=f"Table 3: {measure} per dataset",
        values=data,
        markers=marks,
        notes=list(notes),
        best_by="row",
    )


# --- Tables 4/5: RAG -----------------------------------------------------------------------


def rag_columns(targets: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(dataset, split, measure) columns of the RAG table: R@k ("Recall") first, then answers."""
    columns = []
    for t in targets:
        names = [f"R@{int(t['top_k'])}", *t["measures"]]
        columns += [(t["dataset"], t["split"], m) for m in dict.fromkeys(names)]
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

    ``targets`` are the ``rag.targets`` entries (dataset, split, top_k, measures). A measure
    that was not computed (BERTScore without a model) is dropped from the columns.
    """
    values, markers = _values(metrics), _markers(significance)
    computed = {k[1:] for k in values}
    columns = [c for c in rag_columns(targets) if c in computed]
    return _runs_by_target(
        values,
        markers,
        runs,
        columns,
        "table4_rag",
        "Tables 4/5: RAG answer quality from each run's top-k passages",
        notes,
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
        key="table1_annotation",
        title="Table 1: LLM annotation quality against the human positives",
        values=data,
        formats={label: fmt for label, fmt in present.values()},
        notes=list(notes),
        bold_best=False,
    )


# --- Table 6: controlled comparisons --------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """A setting of Table 6 and the run keys that make it up.

    Runs belong to one comparison when they pass ``member`` and agree on every key outside
    ``keys``; ``one_per`` keeps one run per value of those keys: the first (config order) for
    which ``prefer`` is true, else the first.
    """

    name: str
    keys: frozenset[str]
    member: Callable[[Mapping[str, Any]], bool]
    one_per: tuple[str, ...] = ()
    prefer: Callable[[Mapping[str, Any]], bool] = lambda spec: True


def _single_stage(spec: Mapping[str, Any]) -> bool:
    """Trained once on all pool queries from one label source (no human-label add-on)."""
    return (
        spec.get("init_from") is None
        and not spec.get("union_ratio")
        and float(spec.get("query_ratio", 1.0)) == 1.0
    )


def _uses_human_labels(spec: Mapping[str, Any]) -> bool:
    """A curriculum stage 2 or a Positive Union run (LLM labels plus some human labels)."""
    return spec.get("init_from") is not None or float(spec.get("union_ratio") or 0) > 0


def _llm_labels(spec: Mapping[str, Any]) -> bool:
    return spec.get("label_source") != "human"


PAPER_LOSS = {
    "human": "SingleLH",
    "relsel": "SumMargLH",
    "utilsel": "SumMargLH",
    "utilrank": "Rand1LH",
}
"""The loss the paper trains each label source with (Table 6's strategy rows, digest 10.9)."""


def _paper_loss(spec: Mapping[str, Any]) -> bool:
    return spec.get("loss") == PAPER_LOSS.get(str(spec.get("label_source")))


COMPONENTS = (
    Component(
        "annotation strategy",
        frozenset({"label_source", "utilrank_threshold", "loss", "positive_sampling"}),
        lambda s: _single_stage(s) and s.get("human_positive", "random") == "random",
        one_per=("label_source",),
        prefer=_paper_loss,
    ),
    Component("loss", frozenset({"loss", "positive_sampling"}), lambda s: True),
    Component(
        "+ human labels",
        frozenset(
            {
                "init_from",
                "label_source",
                "loss",
                "positive_sampling",
                "query_ratio",
                "union_ratio",
                "epochs",
                "lr",
                "warmup_ratio",
            }
        ),
        _uses_human_labels,
    ),
    Component(
        "UtilRank threshold",
        frozenset({"utilrank_threshold"}),
        lambda s: s.get("label_source") == "utilrank",
    ),
    Component("human positive in LLM labels", frozenset({"human_positive"}), _llm_labels),
)
"""Table 6's components, in the paper's order (the LLM annotator is fixed per experiment)."""


@dataclass(frozen=True)
class ControlledGroup:
    """Runs that differ only in the keys of one component."""

    component: str
    runs: tuple[str, ...]
    varying: tuple[str, ...]


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A run's settings with the keys that cannot matter blanked (the UtilRank cut off UtilRank)."""
    out = dict(spec)
    if out.get("label_source") != "utilrank":
        out["utilrank_threshold"] = None
    return out


def controlled_groups(
    specs: Mapping[str, Mapping[str, Any]], exclude: Iterable[str] = ()
) -> list[ControlledGroup]:
    """The controlled comparisons among training runs (Table 6), in component order.

    For each :data:`COMPONENTS` entry, the member runs are partitioned by their values on every
    key outside the component; a part of two or more runs is one comparison. A comparison with
    exactly the runs of an earlier one is not repeated. ``exclude`` (the reference run, shown
    on its own row) takes part in none.
    """
    excluded = set(exclude)
    normal = {name: normalize_spec(s) for name, s in specs.items() if name not in excluded}
    all_keys = sorted({k for s in normal.values() for k in s})
    groups: list[ControlledGroup] = []
    seen: set[frozenset[str]] = set()
    for component in COMPONENTS:
        parts: dict[tuple, list[str]] = {}
        for name, spec in normal.items():
            if not component.member(spec):
                continue
            fixed = tuple(repr(spec.get(k)) for k in all_keys if k not in component.keys)
            parts.setdefault(fixed, []).append(name)
        for members in parts.values():
            if component.one_per:
                chosen: dict[tuple, str] = {}
                ranked = sorted(members, key=lambda n: not component.prefer(normal[n]))  # stable
                for name in ranked:
                    chosen.setdefault(
                        tuple(repr(normal[name].get(k)) for k in component.one_per), name
                    )
                members = [n for n in members if n in chosen.values()]
            if len(members) < 2 or frozenset(members) in seen:
                continue
            varying = tuple(
                k
                for k in sorted(component.keys)
                if len({repr(normal[m].get(k)) for m in members}) > 1
            )
            seen.add(frozenset(members))
            groups.append(ControlledGroup(component.name, tuple(members), varying))
    return groups


def _pct(ratio: Any) -> str:
    return f"{float(ratio) * 100:g} %"


def describe_variant(spec: Mapping[str, Any], varying: Sequence[str]) -> str:
    """A short name for a run within its comparison (what sets it apart)."""
    spec = normalize_spec(spec)
    parts: list[str] = []
    covered = {"init_from", "query_ratio", "union_ratio", "label_source", "utilrank_threshold"}
    if spec.get("init_from"):
        parts.append(f"CL {_pct(spec.get('query_ratio', 1.0))} human after {spec['init_from']}")
        covered |= {"epochs", "lr", "warmup_ratio", "loss", "positive_sampling"}
    elif float(spec.get("union_ratio") or 0) > 0:
        parts.append(f"Positive Union {_pct(spec['union_ratio'])}")
        covered |= {"loss", "positive_sampling"}
    elif {"label_source", "utilrank_threshold", "query_ratio", "union_ratio", "init_from"} & set(
        varying
    ):
        name = LABEL_NAMES.get(str(spec.get("label_source")), str(spec.get("label_source")))
        if spec.get("label_source") == "utilrank" and spec.get("utilrank_threshold") is not None:
            name += f" (k = {float(spec['utilrank_threshold']):g} %)"
        if float(spec.get("query_ratio", 1.0)) < 1.0:
            name += f", {_pct(spec['query_ratio'])} of queries"
        parts.append(name)
    if "loss" in varying and "loss" not in covered:
        parts.append(str(spec.get("loss")))
    elif "positive_sampling" in varying and "positive_sampling" not in covered:
        parts.append(str(spec.get("positive_sampling")))
    covered |= {"loss", "positive_sampling"}
    parts += [f"{k} = {spec.get(k)}" for k in varying if k not in covered]
    return ", ".join(parts) or "(same settings)"


def controlled_table(
    specs: Mapping[str, Mapping[str, Any]],
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None,
    target: tuple[str, str],
    measures: Sequence[str],
    *,
    reference: str | None = None,
    notes: Sequence[str] = (),
) -> ReportTable:
    """Table 6: the controlled comparisons, on one evaluation target (the paper: MS MARCO Dev).

    Rows are (component, variant, run); ``reference`` (the Human run) comes first on its own.
    """
    reference = reference if reference in specs else None
    groups = controlled_groups(specs, exclude=[reference] if reference else [])
    rows: list[tuple[str, str, str]] = []
    if reference:
        rows.append(
            ("—", LABEL_NAMES.get(str(specs[reference].get("label_source")), reference), reference)
        )
    for group in groups:
        rows += [
            (group.component, describe_variant(specs[r], group.varying), r) for r in group.runs
        ]
    values, markers = _values(metrics), _markers(significance)
    data, marks = _grid(
        values, markers, rows, list(measures), lambda row, m: (row[2], target[0], target[1], m)
    )
    index = (
        pd.MultiIndex.from_tuples(rows, names=["component", "variant", "run"])
        if rows
        else pd.MultiIndex.from_tuples([], names=["component", "variant", "run"])
    )
    data.index = marks.index = index
    return ReportTable(
        key="table6_controlled",
        title=f"Table 6: controlled comparisons on {target_label(*target)}",
        values=data,
        markers=marks,
        notes=list(notes),
        bold_best=False,
    )


# --- Figure 3 ------------------------------------------------------------------------------


def annotation_sweep(report: pd.DataFrame) -> pd.DataFrame:
    """UtilRank precision / recall / positives per threshold k (%), sorted by k."""
    rows = report[(report["strategy"] == "utilrank") & report["threshold"].notna()]
    out = rows[["threshold", "precision", "recall", "avg_positives"]].astype(float)
    return out.sort_values("threshold").reset_index(drop=True)


def utilrank_runs(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Single-stage runs trained on UtilRank labels -> their threshold k (%)."""
    return {
        name: float(spec["utilrank_threshold"])
        for name, spec in specs.items()
        if spec.get("label_source") == "utilrank"
        and spec.get("utilrank_threshold") is not None
        and _single_stage(spec)
    }


def retrieval_by_threshold(
    specs: Mapping[str, Mapping[str, Any]],
    metrics: pd.DataFrame,
    target: tuple[str, str],
    measure: str,
) -> pd.DataFrame:
    """(run, threshold, loss, value) of every UtilRank-trained run evaluated on ``target``."""
    values = _values(metrics)
    rows = []
    for name, threshold in utilrank_runs(specs).items():
        value = values.get((name, target[0], target[1], measure))
        if value is not None:
            rows.append((name, threshold, str(specs[name].get("loss")), value))
    frame = pd.DataFrame(rows, columns=["run", "threshold", "loss", "value"])
    return frame.sort_values(["loss", "threshold"]).reset_index(drop=True)


def cl_ratio_runs(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Curriculum runs by parent: ``{parent: {run: human ratio in %}}``.

    A curriculum run is a stage 2 trained on human labels from its parent's checkpoint.
    """
    curves: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        parent = spec.get("init_from")
        if parent and spec.get("label_source") == "human":
            curves.setdefault(str(parent), {})[name] = float(spec.get("query_ratio", 1.0)) * 100
    return curves


def has_ratio_curves(specs: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether some run is continued with human labels at two or more ratios (Figure 3a)."""
    return any(len(set(runs.values())) >= 2 for runs in cl_ratio_runs(specs).values())


def human_ratio_curves(
    specs: Mapping[str, Mapping[str, Any]],
    metrics: pd.DataFrame,
    target: tuple[str, str],
    measure: str,
) -> pd.DataFrame:
    """(parent, ratio, run, value): each parent at 0 % and its CL runs at their human ratio.

    Only parents continued at two or more ratios make a curve.
    """
    values = _values(metrics)
    rows = []
    for parent, runs in cl_ratio_runs(specs).items():
        if len(set(runs.values())) < 2:
            continue
        points = [(parent, 0.0)] + sorted(runs.items(), key=lambda kv: kv[1])
        for run, ratio in points:
            value = values.get((run, target[0], target[1], measure))
            if value is not None:
                rows.append((parent, ratio, run, value))
    return pd.DataFrame(rows, columns=["parent", "ratio", "run", "value"])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=130, bbox_inches="tight"
        )


def plot_threshold_sweep(
    sweep: pd.DataFrame,
    retrieval: pd.DataFrame,
    measure: str,
    target: str,
    path: str | Path,
) -> None:
    """Figure 3b: UtilRank threshold k against annotation precision/recall and retrieval."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if len(sweep):
        left.plot(sweep["threshold"], 100 * sweep["precision"], "o-", label="precision")
        left.plot(sweep["threshold"], 100 * sweep["recall"], "s-", label="recall")
        left.legend()
    else:
        left.text(
            0.5, 0.5, "no UtilRank annotation", ha="center", va="center", transform=left.transAxes
        )
    left.set(xlabel="UtilRank threshold k (%)", ylabel="vs human positives (%)", title="annotation")
    if len(retrieval):
        for loss, rows in retrieval.groupby("loss", sort=True):
            right.plot(rows["threshold"], 100 * rows["value"], "o-", label=f"trained with {loss}")
            for run, x, y in zip(rows["run"], rows["threshold"], rows["value"]):
                right.annotate(
                    run, (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
        right.legend()
    else:
        right.text(
            0.5,
            0.5,
            "no run trained on UtilRank labels",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
    right.set(
        xlabel="UtilRank threshold k (%)", ylabel=f"{measure} (%)", title=f"retrieval on {target}"
    )
    ticks = sorted(set(sweep["threshold"]) | set(retrieval["threshold"]))
    for ax in (left, right):
        if ticks:
            ax.set_xticks(ticks)
            ax.set_xlim(min(ticks) - 5, max(ticks) + 5)
        ax.grid(alpha=0.3)
    fig.suptitle("Figure 3b: UtilRank threshold")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_human_ratio(
    curves: pd.DataFrame,
    measure: str,
    target: str,
    path: str | Path,
    reference: tuple[str, float] | None = None,
) -> None:
    """Figure 3a: human-label ratio of the curriculum stage against retrieval quality."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for parent, rows in curves.groupby("parent", sort=True):
        ax.plot(rows["ratio"], 100 * rows["value"], "o-", label=f"{parent} + CL")
    if reference is not None:
        ax.axhline(
            100 * reference[1], color="grey", linestyle="--", label=f"{reference[0]} (100 % human)"
        )
    if len(curves) or reference is not None:
        ax.legend()
    ax.set(
        xlabel="human labels in the curriculum stage (%)",
        ylabel=f"{measure} (%)",
        title=f"retrieval on {target}",
    )
    ax.grid(alpha=0.3)
    fig.suptitle("Figure 3a: human-label ratio")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
