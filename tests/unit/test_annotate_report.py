"""The annotation report: precision/recall against human positives, UtilRank sweep, cost."""

import pandas as pd
import pytest

from utilann.annotate.report import annotation_report, render_markdown, step_summary
from utilann.schemas import ANNOTATION_REPORT


def rows(query, strategy, selected, ranks=None, humans=(0,)):
    n = len(selected)
    ranks = ranks or [None] * n
    length = n if strategy == "relsel" else sum(r is not None for r in ranks) or sum(selected)
    return [
        {
            "query_id": query,
            "doc_id": f"{query}-{i}",
            "position": i,
            "is_human_positive": i in humans,
            "strategy": strategy,
            "selected": s,
            "rank": r,
            "list_length": length,
        }
        for i, (s, r) in enumerate(zip(selected, ranks, strict=True))
    ]


@pytest.fixture
def labels():
    data = (
        rows("q1", "relsel", [True, True, True, False])
        + rows("q2", "relsel", [False, True, False, False])
        + rows("q3", "relsel", [False] * 4)
        + rows("q1", "utilsel", [True, False, True, False])
        + rows("q2", "utilsel", [False, True, False, False])
        + rows("q3", "utilsel", [False] * 4)
        + rows("q1", "utilrank", [True, True, True, False], ranks=[2, 1, 3, None])
        + rows("q2", "utilrank", [False, True, False, False], ranks=[None, 1, None, None])
        + rows("q3", "utilrank", [False] * 4)
    )
    df = pd.DataFrame(data)
    df["rank"] = df["rank"].astype("Int32")
    return df


@pytest.fixture
def raw():
    steps = ["relsel"] * 3 + ["answer"] * 2 + ["utilsel"] * 2 + ["utilrank"] * 2
    return pd.DataFrame(
        {
            "step": steps,
            "prompt_tokens": [100] * len(steps),
            "output_tokens": [10] * len(steps),
            "gen_seconds": [1.0] * len(steps),
            "from_cache": [False] * 7 + [True] * 2,
            "parse_status": ["ok", "repaired", "failed", "ok", "ok", "ok", "failed", "ok", "ok"],
        }
    )


def test_quality_and_cost(labels, raw):
    report = annotation_report(labels, raw, [10, 50, 100]).set_index("name")
    assert list(report.index) == ["relsel", "utilsel", "utilrank@10", "utilrank@50", "utilrank@100"]
    relsel = report.loc["relsel"]
    assert relsel["positives"] == 4 and relsel["human_positives"] == 3
    assert relsel["precision"] == pytest.approx(1 / 4) and relsel["recall"] == pytest.approx(1 / 3)
    assert relsel["avg_positives"] == pytest.approx(4 / 3) and relsel["empty_queries"] == 1
    assert relsel["failed_parses"] == 1 and relsel["repaired_parses"] == 1
    assert relsel["prompt_tokens"] == 300 and relsel["wall_seconds"] == pytest.approx(3.0)
    assert relsel["tokens_per_second"] == pytest.approx(110.0)
    utilsel = report.loc["utilsel"]
    assert utilsel["precision"] == pytest.approx(1 / 3) and utilsel["calls"] == 2
    assert utilsel["prompt_tokens"] == 700  # relsel + answer + utilsel
    # q1 ranks 3 passages: k=10 -> 1 (doc 1, not human), k=100 -> all 3 (human included)
    assert report.loc["utilrank@10", "positives"] == 2
    assert report.loc["utilrank@10", "recall"] == 0
    assert report.loc["utilrank@100", "positives"] == 4
    assert report.loc["utilrank@100", "recall"] == pytest.approx(1 / 3)
    assert report.loc["utilrank@50", "threshold"] == 50.0
    assert list(annotation_report(labels, raw, [10]).columns) == ANNOTATION_REPORT.names


def test_markdown_mentions_every_strategy_and_step(labels, raw):
    report = annotation_report(labels, raw, [10, 20])
    steps = step_summary(raw)
    assert steps.set_index("step").loc["utilrank", "cached"] == 2
    text = render_markdown(report, steps, {"model": "m"})
    for name in ["relsel", "utilsel", "utilrank@10", "utilrank@20", "answer", "**model**"]:
        assert name in text
    assert "| 25.000 |" in text  # RelSel precision in percent
