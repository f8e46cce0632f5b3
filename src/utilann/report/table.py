"""The report's table object and its three renderings: HTML, Markdown and LaTeX.

A :class:`ReportTable` holds numbers, their significance markers, a per-column format and
notes; it knows nothing about where the numbers came from. The renderers turn it into

* a standalone HTML page (``snakemake --report`` shows HTML results inline),
* a GitHub-flavoured Markdown section (``summary.md``, for terminals),
* a booktabs LaTeX ``table`` (to paste into a paper: ``\\usepackage{booktabs}``).

All three show the same cells: the value in the column's format, bold where it is the best of
its column (or row), and the marker ("+" / "-") raised after it.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

MISSING = "–"
"""Shown for a value that does not exist (run not evaluated there, measure not computed)."""

FORMATS = ("pct", "float", "int")


@dataclass
class ReportTable:
    """Numbers with their significance markers, ready to render.

    Attributes:
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

    @property
    def row_labels(self) -> tuple[list[str], list[tuple[str, ...]]]:
        """(names of the label columns, one tuple of labels per row)."""
        index = self.values.index
        if isinstance(index, pd.MultiIndex):
            names = [str(n) if n is not None else "" for n in index.names]
            return names, [tuple(map(str, t)) for t in index]
        return [str(index.name or "")], [(str(v),) for v in index]

    @property
    def column_groups(self) -> list[tuple[str, int]] | None:
        """(top label, width) of a two-row header, or None when the columns are flat."""
        columns = list(self.values.columns)
        if not columns or not all(isinstance(c, tuple) and len(c) == 2 for c in columns):
            return None
        groups: list[tuple[str, int]] = []
        for top, _ in columns:
            if groups and groups[-1][0] == str(top):
                groups[-1] = (str(top), groups[-1][1] + 1)
            else:
                groups.append((str(top), 1))
        return groups


def column_label(value: Any) -> str:
    """A one-row header label (a tuple column reads as its parts joined by spaces)."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


# --- HTML ----------------------------------------------------------------------------------

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
    names, rows = table.row_labels
    columns = list(table.values.columns)
    groups = table.column_groups
    out = [f"<h3>{html.escape(table.title)}</h3>", "<table>", "<thead>"]
    if groups is not None:
        out.append("<tr>" + "".join(f'<th rowspan="2">{html.escape(n)}</th>' for n in names))
        out.append(
            "".join(f'<th colspan="{n}">{html.escape(top)}</th>' for top, n in groups) + "</tr>"
        )
        out.append(
            "<tr>" + "".join(f"<th>{html.escape(str(sub))}</th>" for _, sub in columns) + "</tr>"
        )
    else:
        cells = [*names, *(column_label(c) for c in columns)]
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


# --- Markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: ReportTable) -> str:
    """The table as a GitHub-flavoured Markdown section (title, table, notes)."""
    names, rows = table.row_labels
    header = [*names, *(column_label(c) for c in table.values.columns)]
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


# --- LaTeX ---------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "\u2014": "---",  # em dash
    "\u2013": "--",  # en dash (MISSING)
    "\u2212": "$-$",  # minus sign
    "\u2020": r"\dag{}",  # dagger (significance against the second baseline)
    "\u2021": r"\ddag{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (run names, measures, notes)."""
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def _marker_latex(marker: str) -> str:
    """A raised marker; a minus is typeset as one ($-$), not as a hyphen."""
    if not marker:
        return ""
    parts = [r"$-$" if c == "-" else latex_escape(c) for c in marker]
    return r"\textsuperscript{" + "".join(parts) + "}"


def render_latex(table: ReportTable, label: str | None = None) -> str:
    """The table as a booktabs LaTeX ``table`` environment (needs ``\\usepackage{booktabs}``).

    Numbers are right-aligned, the best of each column (or row) is ``\\textbf``, markers are
    superscripts, every label and note is escaped. ``label`` becomes ``\\label{...}``.
    """
    names, rows = table.row_labels
    columns = list(table.values.columns)
    n_labels, n_values = len(names), len(columns)
    groups = table.column_groups
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{" + latex_escape(table.title) + "}",
    ]
    if label:
        lines.append(r"\label{" + label + "}")
    lines += [r"\begin{tabular}{" + "l" * n_labels + "r" * n_values + "}", r"\toprule"]
    if groups is not None:
        tops = [r"\multicolumn{" + f"{n}" + "}{c}{" + latex_escape(top) + "}" for top, n in groups]
        lines.append(" & ".join([""] * n_labels + tops) + r" \\")
        rules, start = [], n_labels + 1
        for _, n in groups:
            rules.append(r"\cmidrule(lr){" + f"{start}-{start + n - 1}" + "}")
            start += n
        lines.append(" ".join(rules))
        header = [*names, *(str(sub) for _, sub in columns)]
    else:
        header = [*names, *(column_label(c) for c in columns)]
    lines.append(" & ".join(latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    best = table.best()
    for i, labels in enumerate(rows):
        cells = [latex_escape(label) for label in labels]
        for j in range(n_values):
            text = latex_escape(table.text(i, j))
            if best.iat[i, j]:
                text = r"\textbf{" + text + "}"
            cells.append(text + _marker_latex(table.marker(i, j)))
        lines.append(" & ".join(cells) + r" \\")
    if table.values.empty:
        width = n_labels + n_values
        lines.append(r"\multicolumn{" + f"{width}" + r"}{c}{(no rows)} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [
            r"\par\smallskip",
            r"\begin{minipage}{\linewidth}\footnotesize",
            *(latex_escape(note) + r"\par" for note in table.notes),
            r"\end{minipage}",
        ]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --- files ---------------------------------------------------------------------------------


def write_text(text: str, path: str | Path) -> None:
    """Atomically write a text file (HTML page, Markdown, LaTeX)."""
    from utilann.io import atomic_path

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
