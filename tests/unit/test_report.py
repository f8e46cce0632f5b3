"""Report tables and figures (src/utilann/report/) on small hand-made tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from utilann import report as R
from utilann.schemas import SIGNIFICANCE


def metrics(rows):
    return pd.DataFrame(rows, columns=["run", "dataset", "split", "measure", "value"])


def significance(rows):
    """(run, dataset, split, measure, marker) -> full SIGNIFICANCE rows against `human`."""
    full = [
        (run, "human", d, s, m, 10, 0.0, 0.0, 0.0, 0.0, 0.01 if mark else 0.5, bool(mark), mark)
        for run, d, s, m, mark in rows
    ]
    return pd.DataFrame(full, columns=SIGNIFICANCE.names)


RETRIEVAL = metrics(
    [
        ("bm25", "scifact", "test", "nDCG@10", 0.679),
        ("bm25", "scifact", "test", "RR@10", 0.641),
        ("human", "scifact", "test", "nDCG@10", 0.7004),
        ("human", "scifact", "test", "RR@10", 0.66),
        ("utilsel", "scifact", "test", "nDCG@10", 0.71),
        ("utilsel", "scifact", "test", "RR@10", 0.65),
        ("bm25", "nq", "test", "nDCG@10", 0.30),
        ("human", "nq", "test", "nDCG@10", 0.50),
        ("utilsel", "nq", "test", "nDCG@10", 0.54),
    ]
)
SIG = significance(
    [
        ("bm25", "scifact", "test", "nDCG@10", "-"),
        ("utilsel", "nq", "test", "nDCG@10", "+"),
        ("utilsel", "scifact", "test", "RR@10", ""),
    ]
)


def spec(**overrides):
    base = dict(
        backbone="b",
        init_from=None,
        label_source="human",
        utilrank_threshold=None,
        human_positive="random",
        union_ratio=0.0,
        query_ratio=1.0,
        empty_policy="drop",
        seed=42,
        loss="SingleLH",
        positive_sampling="single",
        lr=3e-5,
        epochs=2,
        warmup_ratio=0.0,
        batch_size=16,
    )
    return {**base, **overrides}


SPECS = {
    "human": spec(),
    "relsel": spec(label_source="relsel", loss="SumMargLH", positive_sampling="pos_all"),
    "utilsel": spec(label_source="utilsel", loss="SumMargLH", positive_sampling="pos_all"),
    "utilrank": spec(label_source="utilrank", utilrank_threshold=10.0, loss="Rand1LH"),
    "utilsel-rand1": spec(label_source="utilsel", loss="Rand1LH"),
    "utilsel-joint": spec(label_source="utilsel", loss="JointLH", positive_sampling="pos_all"),
    "utilrank-30": spec(label_source="utilrank", utilrank_threshold=30.0, loss="Rand1LH"),
    "utilsel-pu20": spec(
        label_source="utilsel", loss="SumMargLH", positive_sampling="pos_all", union_ratio=0.2
    ),
    "utilsel-cl20": spec(init_from="utilsel", query_ratio=0.2, epochs=1),
    "utilsel-cl100": spec(init_from="utilsel", epochs=1),
    "lr-variant": spec(
        label_source="relsel", loss="SumMargLH", positive_sampling="pos_all", lr=1e-5
    ),
}


# --- the table object and its renderers -----------------------------------------------------


def test_retrieval_table_layout_markers_and_best():
    table = R.retrieval_table(
        RETRIEVAL,
        SIG,
        ["bm25", "zeroshot", "human", "utilsel"],
        {("scifact", "test"): ["nDCG@10", "RR@10"], ("nq", "test"): ["nDCG@10"]},
    )
    assert list(table.values.index) == ["bm25", "human", "utilsel"]  # zeroshot has no value
    assert list(table.values.columns) == [
        ("scifact/test", "nDCG@10"),
        ("scifact/test", "RR@10"),
        ("nq/test", "nDCG@10"),
    ]
    assert table.text(0, 0) == "67.9" and table.marker(0, 0) == "-"
    assert table.marker(2, 2) == "+" and table.marker(1, 0) == ""
    best = table.best()
    assert best.iat[2, 0] and not best.iat[1, 0]  # 71.0 > 70.0
    assert best.iat[1, 1] and best.iat[2, 2]


def test_best_uses_shown_precision_so_ties_are_all_bold():
    m = metrics(
        [("a", "d", "s", "M", 0.70004), ("b", "d", "s", "M", 0.69996), ("c", "d", "s", "M", 0.5)]
    )
    table = R.retrieval_table(m, None, ["a", "b", "c"], {("d", "s"): ["M"]})
    assert list(table.best().iloc[:, 0]) == [True, True, False]  # both show 70.0


def test_missing_value_is_a_dash_not_nan():
    table = R.retrieval_table(RETRIEVAL, None, ["bm25"], {("scifact", "test"): ["R@1000"]})
    assert table.text(0, 0) == R.MISSING


def test_markdown_has_header_alignment_markers_and_bold():
    table = R.retrieval_table(RETRIEVAL, SIG, ["bm25", "utilsel"], {("nq", "test"): ["nDCG@10"]})
    lines = R.render_markdown(table).splitlines()
    assert lines[0] == "### " + table.title
    assert lines[2] == "| run | nq/test nDCG@10 |"
    assert lines[3] == "|---|---:|"
    assert lines[4] == "| bm25 | 30.0 |"
    assert lines[5] == "| utilsel | **54.0+** |"


def test_html_is_a_page_with_two_header_rows_and_escaped_text():
    table = R.retrieval_table(
        RETRIEVAL, SIG, ["bm25", "human"], {("scifact", "test"): ["nDCG@10", "RR@10"]}
    )
    table.notes.append("a < b & c")
    page = R.render_html(table)
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr>") == 4  # 2 header + 2 rows
    assert '<th colspan="2">scifact/test</th>' in page
    assert '<sup class="minus">\u2212</sup>' in page
    assert "a &lt; b &amp; c" in page
    fragment = R.render_html(table, standalone=False)
    assert "<html" not in fragment and "<table>" in fragment


def test_table_rejects_unknown_format_and_misshapen_markers():
    values = pd.DataFrame({"x": [1.0]})
    with pytest.raises(ValueError, match="format"):
        R.ReportTable("t", values, formats={"x": "percent"})
    with pytest.raises(ValueError, match="shape"):
        R.ReportTable("t", values, markers=pd.DataFrame({"x": ["", ""]}))


def test_duplicate_metric_rows_are_an_error():
    with pytest.raises(ValueError, match="repeated"):
        R.retrieval_table(
            pd.concat([RETRIEVAL, RETRIEVAL.head(1)]),
            None,
            ["bm25"],
            {("scifact", "test"): ["nDCG@10"]},
        )


# --- Table 3 ------------------------------------------------------------------------------


def test_dataset_table_average_only_over_complete_runs():
    m = pd.concat([RETRIEVAL, metrics([("zeroshot", "nq", "test", "nDCG@10", 0.4)])])
    table = R.dataset_table(
        m, SIG, ["bm25", "zeroshot", "human"], [("scifact", "test"), ("nq", "test")], "nDCG@10"
    )
    assert list(table.values.index) == ["scifact/test", "nq/test", "Average"]
    assert list(table.values.columns) == ["bm25", "zeroshot", "human"]
    assert table.values.loc["Average", "bm25"] == pytest.approx((0.679 + 0.30) / 2)
    assert math.isnan(table.values.loc["Average", "zeroshot"])  # no scifact value
    assert table.marker(0, 0) == "-" and table.marker(2, 0) == ""
    best = table.best()  # runs are columns: the best run of each dataset (row) is bold
    assert list(best.loc["scifact/test"]) == [False, False, True]
    assert list(best.loc["nq/test"]) == [False, False, True]


# --- Tables 4/5 ---------------------------------------------------------------------------


def test_rag_table_puts_recall_first_and_drops_uncomputed_measures():
    m = metrics(
        [
            ("bm25", "nq", "test", "EM", 0.2),
            ("bm25", "nq", "test", "F1", 0.3),
            ("bm25", "nq", "test", "R@5", 0.6),
            ("human", "nq", "test", "EM", 0.25),
            ("human", "nq", "test", "F1", 0.35),
            ("human", "nq", "test", "R@5", 0.7),
        ]
    )
    targets = [
        {"dataset": "nq", "split": "test", "top_k": 5, "measures": ["EM", "F1", "BERTScore"]}
    ]
    table = R.rag_table(
        m, significance([("bm25", "nq", "test", "EM", "-")]), ["human", "bm25"], targets
    )
    assert [c[1] for c in table.values.columns] == ["R@5", "EM", "F1"]
    assert list(table.values.index) == ["human", "bm25"]
    assert table.text(1, 1) + table.marker(1, 1) == "20.0-"


# --- Table 1 ------------------------------------------------------------------------------


def test_annotation_table_formats_percent_counts_and_floats():
    report = pd.DataFrame(
        {
            "name": ["relsel", "utilsel", "utilrank@10"],
            "strategy": ["relsel", "utilsel", "utilrank"],
            "threshold": [None, None, 10.0],
            "queries": [64, 64, 64],
            "precision": [0.151, 0.295, 0.713],
            "recall": [0.928, 0.848, 0.72],
            "avg_positives": [6.2, 2.9, 1.0],
            "empty_queries": [1, 3, 1],
            "prompt_tokens": [123456, 2000, 3000],
        }
    )
    table = R.annotation_table(report)
    assert list(table.values.index) == ["relsel", "utilsel", "utilrank@10"]
    assert list(table.values.columns) == [
        "Precision",
        "Recall",
        "#pos/query",
        "queries",
        "no positive",
        "prompt tokens",
    ]
    row = [table.text(0, j) for j in range(6)]
    assert row == ["15.1", "92.8", "6.2", "64", "1", "123,456"]
    assert not table.best().any().any()


# --- Table 6 ------------------------------------------------------------------------------


def test_controlled_groups_follow_the_paper_components():
    groups = {g.component: g for g in R.controlled_groups(SPECS, exclude=["human"])}
    # one run per label source, the first in config order; lr-variant differs in lr too
    assert groups["annotation strategy"].runs == ("relsel", "utilsel", "utilrank")
    assert groups["loss"].runs == ("utilsel", "utilsel-rand1", "utilsel-joint")
    assert groups["loss"].varying == ("loss", "positive_sampling")
    assert set(groups["+ human labels"].runs) == {"utilsel-pu20", "utilsel-cl20", "utilsel-cl100"}
    assert groups["UtilRank threshold"].runs == ("utilrank", "utilrank-30")
    assert all("lr-variant" not in g.runs for g in groups.values())
    assert all("human" not in g.runs for g in groups.values())


def test_strategy_comparison_prefers_the_papers_loss_over_config_order():
    specs = {
        "utilsel-joint": SPECS["utilsel-joint"],
        **{k: SPECS[k] for k in ("relsel", "utilsel", "utilrank")},
    }
    groups = {g.component: g for g in R.controlled_groups(specs)}
    assert groups["annotation strategy"].runs == ("relsel", "utilsel", "utilrank")
    assert groups["loss"].runs == ("utilsel-joint", "utilsel")


def test_controlled_groups_do_not_repeat_the_same_runs():
    specs = {"pu": SPECS["utilsel-pu20"], "pu-joint": {**SPECS["utilsel-pu20"], "loss": "JointLH"}}
    groups = R.controlled_groups(specs)
    # both runs also form a "+ human labels" comparison: shown once, under "loss"
    assert [(g.component, g.runs) for g in groups] == [("loss", ("pu", "pu-joint"))]


def test_no_group_without_a_comparison():
    assert R.controlled_groups({"human": SPECS["human"], "lr-variant": SPECS["lr-variant"]}) == []


def test_variant_names():
    assert (
        R.describe_variant(SPECS["utilrank"], ["label_source", "loss"])
        == "UtilRank (k = 10 %), Rand1LH"
    )
    assert (
        R.describe_variant(SPECS["utilsel-cl20"], ["init_from", "query_ratio", "loss"])
        == "CL 20 % human after utilsel"
    )
    assert (
        R.describe_variant(SPECS["utilsel-pu20"], ["union_ratio", "loss"]) == "Positive Union 20 %"
    )
    assert R.describe_variant(SPECS["lr-variant"], ["lr"]) == "lr = 1e-05"


def test_controlled_table_has_reference_row_first():
    table = R.controlled_table(
        SPECS, RETRIEVAL, SIG, ("scifact", "test"), ["nDCG@10", "RR@10"], reference="human"
    )
    rows = list(table.values.index)
    assert rows[0] == ("—", "Human", "human")
    assert ("annotation strategy", "UtilSel, SumMargLH", "utilsel") in rows
    i = rows.index(("annotation strategy", "UtilSel, SumMargLH", "utilsel"))
    assert table.text(i, 0) == "71.0" and table.text(i, 1) == "65.0"
    assert table.text(rows.index(("loss", "JointLH", "utilsel-joint")), 0) == R.MISSING


# --- Figure 3 ------------------------------------------------------------------------------


ANNOTATION_REPORT = pd.DataFrame(
    {
        "name": ["relsel", "utilrank@30", "utilrank@10"],
        "strategy": ["relsel", "utilrank", "utilrank"],
        "threshold": [None, 30.0, 10.0],
        "precision": [0.15, 0.5, 0.7],
        "recall": [0.9, 0.8, 0.7],
        "avg_positives": [6.0, 2.0, 1.0],
    }
)


def test_threshold_sweep_and_retrieval_points():
    sweep = R.annotation_sweep(ANNOTATION_REPORT)
    assert list(sweep["threshold"]) == [10.0, 30.0] and list(sweep["precision"]) == [0.7, 0.5]
    m = metrics(
        [
            ("utilrank", "scifact", "test", "RR@10", 0.6),
            ("utilsel", "scifact", "test", "RR@10", 0.7),
        ]
    )
    points = R.retrieval_by_threshold(SPECS, m, ("scifact", "test"), "RR@10")
    assert points.to_dict("records") == [
        {"run": "utilrank", "threshold": 10.0, "loss": "Rand1LH", "value": 0.6}
    ]


def test_ratio_curves_need_two_ratios_per_parent():
    assert R.has_ratio_curves(SPECS)
    assert not R.has_ratio_curves({k: v for k, v in SPECS.items() if k != "utilsel-cl100"})
    m = metrics(
        [
            ("utilsel", "d", "s", "RR@10", 0.35),
            ("utilsel-cl20", "d", "s", "RR@10", 0.38),
            ("utilsel-cl100", "d", "s", "RR@10", 0.39),
        ]
    )
    curves = R.human_ratio_curves(SPECS, m, ("d", "s"), "RR@10")
    assert list(zip(curves["ratio"], curves["run"])) == [
        (0.0, "utilsel"),
        (20.0, "utilsel-cl20"),
        (100.0, "utilsel-cl100"),
    ]


def test_figures_are_written_as_png(tmp_path):
    sweep = R.annotation_sweep(ANNOTATION_REPORT)
    points = pd.DataFrame(
        [("utilrank", 10.0, "Rand1LH", 0.6)], columns=["run", "threshold", "loss", "value"]
    )
    R.plot_threshold_sweep(sweep, points, "RR@10", "scifact/test", tmp_path / "f3b.png")
    R.plot_threshold_sweep(
        sweep.iloc[:0], points.iloc[:0], "RR@10", "scifact/test", tmp_path / "empty.png"
    )
    curves = pd.DataFrame(
        [("utilsel", 0.0, "utilsel", 0.3), ("utilsel", 20.0, "c", 0.4)],
        columns=["parent", "ratio", "run", "value"],
    )
    R.plot_human_ratio(curves, "RR@10", "d/s", tmp_path / "f3a.png", reference=("human", 0.38))
    for name in ("f3b.png", "empty.png", "f3a.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_contains_every_table_and_figure():
    t2 = R.retrieval_table(RETRIEVAL, SIG, ["bm25"], {("nq", "test"): ["nDCG@10"]})
    t1 = R.annotation_table(ANNOTATION_REPORT)
    text = R.summary_markdown(
        "demo", [t1, t2], figures=[("Figure 3b", "results/demo/report/fig.png")]
    )
    assert text.startswith("# demo\n")
    assert t1.title in text and t2.title in text and "`results/demo/report/fig.png`" in text


def test_which_runs_each_figure_draws():
    # Figure 3b: single-stage UtilRank runs; Figure 3a: curriculum runs and their parent
    assert list(R.utilrank_settings(SPECS)) == ["utilrank", "utilrank-30"]
    assert list(R.cl_settings(SPECS)) == ["utilsel", "utilsel-cl20", "utilsel-cl100"]
    # the 100 %-human line: the baseline when it is a single-stage run on human labels
    assert R.human_reference(SPECS, "human") == "human"
    assert R.human_reference(SPECS, "utilsel") is None  # LLM labels
    assert R.human_reference(SPECS, "utilsel-cl20") is None  # a curriculum stage 2
    assert R.human_reference(SPECS, "bm25") is None  # not a training run
