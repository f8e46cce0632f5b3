"""The report of the paper config has every table of the paper, each laid out as the paper's.

The report settings are the paper config's own (config/experiments/msmarco-paper.yaml over the
demo defaults, validated); the metrics are made-up values, one per (run, target, measure), so
that every cell exists; the layout (rows, column groups, markers) is what is checked.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config, validate

from utilann import plan
from utilann.report.registry import ReportInputs, figures_for, tables_for
from utilann.schemas import SIGNIFICANCE
from utilann.self_contained import check_self_contained
from utilann.train.spec import resolve_runs

REPO = Path(__file__).resolve().parents[2]
RUNS10 = [
    "human",
    "replug",
    "utilsel",
    "utilrank",
    "replug-cl20",
    "utilsel-cl20",
    "utilrank-cl20",
    "replug-cl100",
    "utilsel-cl100",
    "utilrank-cl100",
]
BEIR = [
    "trec-covid",
    "nfcorpus",
    "nq",
    "hotpotqa",
    "fiqa",
    "arguana",
    "webis-touche2020",
    "cqadupstack",
    "quora",
    "dbpedia-entity",
    "scidocs",
    "fever",
    "climate-fever",
    "scifact",
]


@pytest.fixture(scope="module")
def settings():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    paper = yaml.safe_load((REPO / "config" / "experiments" / "msmarco-paper.yaml").read_text())
    update_config(cfg, copy.deepcopy(paper))
    check_self_contained(cfg, paper)  # as the Snakefile: the paper's sections whole
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return plan.report_settings(cfg, resolve_runs(cfg["training"]), "human", 0.05)


def value(*key: str) -> float:
    """A made-up figure in (0, 1), the same for the same key."""
    return (sum(map(ord, "".join(key))) % 97 + 1) / 100


@pytest.fixture(scope="module")
def tables(settings):
    rows = [
        (run, t["dataset"], t["split"], m, value(run, t["dataset"], t["split"], m))
        for run in settings.runs
        for t in settings.evaluation
        for m in t["measures"]
    ]
    retrieval = pd.DataFrame(rows, columns=["run", "dataset", "split", "measure", "value"])
    rag_rows = [
        (run, t["dataset"], t["split"], m, value(run, t["split"], m))
        for run in settings.rag_runs
        for t in settings.rag_targets
        for m in [f"R@{t['top_k']}", *t["measures"]]
    ]
    rag = pd.DataFrame(rag_rows, columns=retrieval.columns)
    tested = [  # (run, baseline, dataset, split, measure, marker)
        ("utilsel", "human", "msmarco", "dev", "RR@10", "-"),
        ("utilsel", "replug", "msmarco", "dev", "RR@10", "\u2020"),
        ("utilrank", "human", "nq", "test-llama", "EM", "+"),
    ]
    sig = pd.DataFrame(
        [(*key, 10, 0.3, 0.4, 0.1, 3.0, 0.01, True, mark) for *key, mark in tested],
        columns=SIGNIFICANCE.names,
    )
    annotation = pd.DataFrame(
        {
            "name": ["relsel", "utilsel", *(f"utilrank@{k}" for k in (10, 20, 30, 40, 50))],
            "precision": [0.15, 0.3, 0.7, 0.6, 0.5, 0.4, 0.3],
            "recall": [0.93, 0.85, 0.72, 0.75, 0.8, 0.82, 0.84],
            "avg_positives": [6.2, 2.9, 1.0, 1.3, 1.7, 2.3, 3.0],
        }
    )
    manifest = {
        "queries": {"queries": 10, "passages": 310},
        "steps": {"relsel": {"seconds": 60.0}, "utilsel": {"seconds": 30.0}},
    }
    inputs = ReportInputs(
        retrieval=retrieval,
        rag=rag,
        significance=sig,
        annotation=annotation,
        manifests=[manifest],
    )
    return {entry.key: entry.build(settings, inputs) for entry in tables_for(settings)}


def test_every_table_and_figure_of_the_paper_is_in_the_report(settings, tables):
    assert set(tables) == {
        "table1_annotation",
        "table2_retrieval",
        "table3_datasets",
        "table4_rag",
        "table6_controlled",
        "table9_accuracy",
        "table13_rag_topk",
        "table17_cost",
    }
    assert {f.key for f in figures_for(settings)} == {
        "fig3a_human_ratio",
        "fig3b_utilrank_threshold",
    }


def test_table1_has_each_strategy_with_precision_recall_and_positives(tables):
    table = tables["table1_annotation"]
    assert list(table.values.index)[:3] == ["relsel", "utilsel", "utilrank@10"]
    assert list(table.values.columns)[:3] == ["Precision", "Recall", "#pos/query"]


def test_table2_has_the_human_and_hybrid_test_columns_and_the_markers(tables):
    table = tables["table2_retrieval"]
    columns = list(table.values.columns)
    paper = [
        ("msmarco/dev", "RR@10"),
        ("msmarco/dev", "R@1000"),
        ("msmarco/dl19", "nDCG@10"),
        ("msmarco/dl20", "nDCG@10"),
        ("msmarco/dev-hybrid", "RR@10"),
        ("msmarco/dev-hybrid", "nDCG@10"),
    ]
    assert [c for c in columns if c in paper] == paper  # the paper's columns, in its order
    # Beyond the paper: nDCG@10 and R@1000 on every target, R(rel=2)@1000 on DL19/DL20.
    assert {m for _, m in set(columns) - set(paper)} <= {
        "RR@10",
        "nDCG@10",
        "R@1000",
        "R(rel=2)@1000",
    }
    rows = list(table.values.index)
    assert [r for r in rows if r in RUNS10] == RUNS10  # the paper's RetroMAE rows, in order
    assert all(f"contriever-{r}" in rows for r in RUNS10)  # its Contriever half
    i, j = rows.index("utilsel"), columns.index(("msmarco/dev", "RR@10"))
    assert table.marker(i, j) == "-†"  # worse than Human, better than REPLUG


def test_table3_has_the_14_beir_datasets_and_their_average(tables):
    table = tables["table3_datasets"]
    assert list(table.values.index) == [f"{d}/test" for d in BEIR] + ["Average"]
    columns = list(table.values.columns)
    assert [c for c in columns if c in ["bm25", *RUNS10]] == ["bm25", *RUNS10]
    assert table.values.loc["Average", "human"] == pytest.approx(
        table.values.loc[[f"{d}/test" for d in BEIR], "human"].mean()
    )


def test_tables4_5_group_each_split_by_generator(tables):
    table = tables["table4_rag"]
    generators = ["llama", "qwen"]
    msmarco = ["BLEU-3", "BLEU-4", "ROUGE-L", "BERTScore"]
    expected = [("msmarco/dev", "Recall")]
    expected += [("msmarco/dev", f"{g} {m}") for g in generators for m in msmarco]
    for split in ("nq/test", "hotpotqa/test"):
        expected += [(split, "Recall")] + [
            (split, f"{g} {m}") for g in generators for m in ("EM", "F1")
        ]
    assert list(table.values.columns) == expected  # Table 4, then Table 5 (top 5 is Table 13's)
    assert list(table.values.index) == RUNS10
    i, j = RUNS10.index("utilrank"), expected.index(("nq/test", "llama EM"))
    assert table.marker(i, j) == "+"


def test_table13_stacks_top1_and_top5_of_ms_marco_qa(tables):
    table = tables["table13_rag_topk"]
    assert list(table.values.columns) == ["Recall"] + [
        f"{g} {m}" for g in ("llama", "qwen") for m in ("BLEU-3", "BLEU-4", "ROUGE-L", "BERTScore")
    ]
    index = list(table.values.index)
    assert index == [("msmarco/dev", k, run) for k in ("1", "5") for run in RUNS10]


def test_table6_compares_strategies_losses_and_the_human_share(tables):
    table = tables["table6_controlled"]
    runs = [run for _, _, run in table.values.index]
    assert runs[0] == "human"
    for run in ("relsel", "utilsel", "utilrank", "utilsel-rand1", "utilsel-joint", "union20"):
        assert run in runs
    assert {"RR@10", "R@1000"} <= set(table.values.columns)


def test_table9_shows_top20_to_top100_on_nq(tables):
    table = tables["table9_accuracy"]
    assert list(table.values.columns) == [("nq/test", f"Top{k}") for k in (20, 40, 60, 80, 100)]


def test_table17_prices_human_replug_and_llm_labels(tables):
    table = tables["table17_cost"]
    rows = list(table.values.index)
    for run in ("human", "replug", "utilsel", "utilsel-cl20"):
        assert run in rows
