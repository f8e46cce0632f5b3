"""The LaTeX rendering of report tables: escaping, bold best values, raised markers, layout."""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from utilann import report as R


def two_level_table(notes=()):
    """Two runs x (scifact/test: nDCG@10, RR@10; nq/test: nDCG@10), with markers."""
    columns = pd.MultiIndex.from_tuples(
        [("scifact/test", "nDCG@10"), ("scifact/test", "RR@10"), ("nq/test", "nDCG@10")]
    )
    index = pd.Index(["bm25", "utilsel_cl20"], name="run")
    values = pd.DataFrame([[0.679, 0.641, float("nan")], [0.71, 0.65, 0.54]], index, columns)
    markers = pd.DataFrame([["-", "", ""], ["", "", "+"]], index, columns)
    return R.ReportTable(title="Table 2: 100% & more", values=values, markers=markers, notes=notes)


def test_escapes_every_special_character():
    assert R.latex_escape(r"a_b & 50% #1 $x$ {y} ~z ^w \v") == (
        r"a\_b \& 50\% \#1 \$x\$ \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    )
    assert R.latex_escape("R(rel=2)@1000 <k>") == r"R(rel=2)@1000 \textless{}k\textgreater{}"
    assert R.latex_escape("— – \u2212") == "--- -- $-$"


def test_booktabs_layout_with_a_two_row_header():
    lines = R.render_latex(two_level_table(), label="tab:table2_retrieval").splitlines()
    assert lines[:5] == [
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{Table 2: 100\% \& more}",
        r"\label{tab:table2_retrieval}",
        r"\begin{tabular}{lrrr}",
    ]
    assert lines[5] == r"\toprule"
    assert lines[6] == r" & \multicolumn{2}{c}{scifact/test} & \multicolumn{1}{c}{nq/test} \\"
    assert lines[7] == r"\cmidrule(lr){2-3} \cmidrule(lr){4-4}"
    assert lines[8] == r"run & nDCG@10 & RR@10 & nDCG@10 \\"
    assert lines[9] == r"\midrule"
    assert lines[-3:] == [r"\bottomrule", r"\end{tabular}", r"\end{table}"]


def test_bold_best_markers_as_superscripts_and_missing_cells():
    lines = R.render_latex(two_level_table()).splitlines()
    body = lines.index(r"\midrule") + 1
    bm25, utilsel = lines[body], lines[body + 1]
    # bm25 is significantly worse on scifact nDCG@10 (a real minus), and has no nq value
    assert bm25 == r"bm25 & 67.9\textsuperscript{$-$} & 64.1 & -- \\"
    # the best of each column is bold (a column with one value has no best); '+' is raised
    assert utilsel == (
        r"utilsel\_cl20 & \textbf{71.0} & \textbf{65.0} & 54.0\textsuperscript{+} \\"
    )


def test_flat_columns_multiindex_rows_notes_and_no_label():
    index = pd.MultiIndex.from_tuples(
        [("—", "Human", "human"), ("loss", "k = 10 %", "utilrank")],
        names=["component", "variant", "run"],
    )
    values = pd.DataFrame({"RR@10": [0.386, 0.357], "#pos/query": [1.0, 1.25]}, index=index)
    table = R.ReportTable(
        title="Table 6",
        values=values,
        formats={"#pos/query": "float"},
        notes=["Values in %; p < 0.05.", "Second note."],
        bold_best=False,
    )
    text = R.render_latex(table)
    assert r"\label" not in text
    assert r"\begin{tabular}{lllrr}" in text
    assert r"component & variant & run & RR@10 & \#pos/query \\" in text
    assert r"--- & Human & human & 38.6 & 1.0 \\" in text
    assert r"loss & k = 10 \% & utilrank & 35.7 & 1.2 \\" in text
    assert r"\textbf" not in text
    assert r"\footnotesize" in text
    assert "Values in \\%; p \\textless{} 0.05.\\par\nSecond note.\\par" in text


def test_empty_table_says_so():
    table = R.ReportTable(title="t", values=pd.DataFrame(columns=["a", "b"]))
    assert r"\multicolumn{3}{c}{(no rows)} \\" in R.render_latex(table)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_output_compiles_with_pdflatex(tmp_path):
    tables = "\n".join(
        R.render_latex(t)
        for t in (two_level_table(notes=["Values in %; a_b & c."]), two_level_table())
    )
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"{tables}\n\\end{{document}}\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
