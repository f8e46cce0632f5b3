"""Tables 3 (BEIR average), 9, 13 and 17 and the dagger markers, on synthetic metric tables
(values chosen so that every expected cell is computed by hand in the comments)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from utilann import report as R
from utilann.evaluation import answer_accuracy, average_subsets
from utilann.report.cells import significance_markers
from utilann.report.cost import cost_table, run_cost
from utilann.report.tables import accuracy_table, accuracy_targets, topk_groups, topk_table
from utilann.schemas import METRICS, PER_QUERY, RUN, SIGNIFICANCE


def metrics(rows):
    return pd.DataFrame(rows, columns=METRICS.names)


def test_table3_average_is_over_the_beir_rows_only():
    rows = []
    for run, values in {
        "human": (0.30, 0.40, 0.60, 0.70),
        "utilsel": (0.35, 0.45, 0.50, 0.80),
    }.items():
        for (d, s), v in zip(
            [("msmarco", "dev"), ("msmarco", "dl19"), ("scifact", "test"), ("fiqa", "test")], values
        ):
            rows.append((run, d, s, "nDCG@10", v))
    evaluation = [
        {"dataset": "msmarco", "split": "dev", "measures": ["nDCG@10"], "group": "in-domain"},
        {"dataset": "msmarco", "split": "dl19", "measures": ["nDCG@10"], "group": "in-domain"},
        {"dataset": "scifact", "split": "test", "measures": ["nDCG@10"], "group": "zero-shot"},
        {"dataset": "fiqa", "split": "test", "measures": ["nDCG@10"], "group": "zero-shot"},
    ]
    settings = R.ReportSettings(
        experiment="x",
        runs=["human", "utilsel"],
        evaluation=evaluation,
        dataset_measure="nDCG@10",
        bm25={"variant": "flat", "k1": 0.9, "b": 0.4},
        rag_runs=[],
        rag_targets=[],
        generator="g",
        specs={},
        primary=None,
        baseline="human",
        alpha=0.05,
        annotation=False,
    )
    inputs = R.ReportInputs(retrieval=metrics(rows), rag=metrics([]), significance=None)
    table3 = R.TABLES["table3_datasets"].build(settings, inputs)
    assert list(table3.values.index) == ["scifact/test", "fiqa/test", "Average"]
    # human: (0.60 + 0.70) / 2 = 0.65, not (0.30 + 0.40 + 0.60 + 0.70) / 4 = 0.50
    assert table3.values.loc["Average"].tolist() == pytest.approx([0.65, 0.65])
    table2 = R.TABLES["table2_retrieval"].build(settings, inputs)
    assert [c[0] for c in table2.values.columns] == ["msmarco/dev", "msmarco/dl19"]


def test_cqadupstack_is_the_unweighted_mean_of_its_forums():
    def part(name, values):
        per_query = pd.DataFrame(
            [(f"q{i}", "nDCG@10", v) for i, v in enumerate(values)], columns=PER_QUERY.names
        )
        mean = metrics([("human", name, "test", "nDCG@10", sum(values) / len(values))])
        return per_query, mean

    parts = {"cqa-android": part("cqa-android", [1.0, 0.0]), "cqa-gis": part("cqa-gis", [0.4])}
    per_query, means = average_subsets(parts, "human", "cqa", "test")
    # forums count once each: (0.5 + 0.4) / 2 = 0.45 (pooled queries would give 1.4 / 3)
    assert means["value"].tolist() == pytest.approx([0.45])
    assert means[["run", "dataset", "split"]].values.tolist() == [["human", "cqa", "test"]]
    assert sorted(per_query["query_id"]) == ["cqa-android/q0", "cqa-android/q1", "cqa-gis/q0"]
    with pytest.raises(ValueError, match="different measures"):
        bad = {
            **parts,
            "cqa-tex": (parts["cqa-gis"][0], metrics([("human", "x", "test", "R@5", 1.0)])),
        }
        average_subsets(bad, "human", "cqa", "test")


def test_answer_accuracy_is_dpr_top_k():
    run = pd.DataFrame(
        [("q1", "a", 1, 3.0), ("q1", "b", 2, 2.0), ("q1", "c", 3, 1.0), ("q2", "a", 1, 1.0)],
        columns=RUN.names,
    )
    passages = {
        "a": "The capital of France is Lyon, some say.",
        "b": "Paris is the capital of France.",
        "c": "Ménière's disease affects the ear.",
    }
    per_query = answer_accuracy(
        run, {"q1": ["paris"], "q2": ["Meniere's"], "q3": ["x"]}, passages, [1, 2]
    )
    got = {(q, m): v for q, m, v in per_query.itertuples(index=False)}
    # q1: the answer is in the rank-2 passage; q2 only retrieved "a"; q3 retrieved nothing
    assert got == {
        ("q1", "Acc@1"): 0.0,
        ("q1", "Acc@2"): 1.0,
        ("q2", "Acc@1"): 0.0,
        ("q2", "Acc@2"): 0.0,
        ("q3", "Acc@1"): 0.0,
        ("q3", "Acc@2"): 0.0,
    }
    # token match, not substring: "paris" does not match "comparison"
    assert answer_accuracy(run.head(1), {"q1": ["aris"]}, {"a": "Paris"}, [1])[
        "value"
    ].tolist() == [0.0]


def test_table9_shows_topk_columns():
    rows = [
        (run, "nq", "test", f"Acc@{k}", v)
        for run, base in [("human", 0.80), ("utilsel", 0.82)]
        for k, v in [(20, base), (100, base + 0.06)]
    ]
    targets = accuracy_targets(
        [
            {"dataset": "nq", "split": "test", "measures": ["nDCG@10", "Acc@100", "Acc@20"]},
            {"dataset": "scifact", "split": "test", "measures": ["nDCG@10"]},
        ]
    )
    assert [t["cutoffs"] for t in targets] == [[20, 100]]
    table = accuracy_table(metrics(rows), None, ["human", "utilsel"], targets)
    assert list(table.values.columns) == [("nq/test", "Top20"), ("nq/test", "Top100")]
    assert table.values.loc["utilsel"].tolist() == pytest.approx([0.82, 0.88])
    assert "Top100" in R.render_markdown(table)


def test_table13_stacks_top1_and_top5_of_one_split():
    targets = [
        {
            "dataset": "ms",
            "split": "dev",
            "source_split": "dev",
            "top_k": 1,
            "measures": ["BLEU-4", "ROUGE-L"],
        },
        {
            "dataset": "ms",
            "split": "dev-top5",
            "source_split": "dev",
            "top_k": 5,
            "measures": ["BLEU-4", "ROUGE-L"],
        },
        {"dataset": "nq", "split": "test", "source_split": "test", "top_k": 5, "measures": ["EM"]},
    ]
    groups = topk_groups(targets)
    assert [[t["top_k"] for t in g] for g in groups] == [[1, 5]]  # NQ has one top-k only
    rows = []
    for run, recall1, recall5 in [("human", 0.25, 0.55), ("utilsel", 0.22, 0.51)]:
        rows += [
            (run, "ms", "dev", "R@1", recall1),
            (run, "ms", "dev", "BLEU-4", 0.14),
            (run, "ms", "dev", "ROUGE-L", 0.35),
            (run, "ms", "dev-top5", "R@5", recall5),
            (run, "ms", "dev-top5", "BLEU-4", 0.11),
            (run, "ms", "dev-top5", "ROUGE-L", 0.33),
        ]
    sig = pd.DataFrame(
        [
            (
                "utilsel",
                "human",
                "ms",
                "dev-top5",
                "R@5",
                10,
                0.51,
                0.55,
                -0.04,
                -3.0,
                0.01,
                True,
                "-",
            )
        ],
        columns=SIGNIFICANCE.names,
    )
    table = topk_table(metrics(rows), sig, ["human", "utilsel"], groups)
    assert list(table.values.columns) == ["Recall", "BLEU-4", "ROUGE-L"]
    assert list(table.values.index) == [
        ("ms/dev", "1", "human"),
        ("ms/dev", "1", "utilsel"),
        ("ms/dev", "5", "human"),
        ("ms/dev", "5", "utilsel"),
    ]
    assert table.values["Recall"].tolist() == pytest.approx([0.25, 0.22, 0.55, 0.51])
    assert table.markers.iloc[3].tolist() == ["-", "", ""]
    assert "Table 13" in R.render_latex(table)


MANIFESTS = [
    # two shards; 3,600 s of RelSel, 1,800 of the pseudo-answer, 1,800 of UtilSel, 3,600 of
    # UtilRank in all; 2 x 31 x 50 = 3,100 pool passages
    {
        "queries": {"queries": 50, "passages": 1550},
        "steps": {
            "relsel": {"gen_seconds": 1800.0},
            "answer": {"gen_seconds": 900.0},
            "utilsel": {"gen_seconds": 900.0},
            "utilrank": {"gen_seconds": 1800.0},
        },
    },
    {
        "queries": {"queries": 50, "passages": 1550},
        "steps": {
            "relsel": {"gen_seconds": 1800.0},
            "answer": {"gen_seconds": 900.0},
            "utilsel": {"gen_seconds": 900.0},
            "utilrank": {"gen_seconds": 1800.0},
        },
    },
]
SPECS = {
    "human": {"label_source": "human", "init_from": None, "query_ratio": 1.0, "union_ratio": 0.0},
    "utilsel": {
        "label_source": "utilsel",
        "init_from": None,
        "query_ratio": 1.0,
        "union_ratio": 0.0,
    },
    "utilrank": {
        "label_source": "utilrank",
        "init_from": None,
        "query_ratio": 1.0,
        "union_ratio": 0.0,
    },
    "utilsel-cl20": {
        "label_source": "human",
        "init_from": "utilsel",
        "query_ratio": 0.2,
        "union_ratio": 0.0,
    },
    "union20": {
        "label_source": "utilsel",
        "init_from": None,
        "query_ratio": 1.0,
        "union_ratio": 0.2,
    },
    "replug": {"label_source": "replug", "init_from": None, "query_ratio": 1.0, "union_ratio": 0.0},
}
PRICES = {"gpu_hour_usd": 0.8, "human_label_usd": 0.09, "gpus": 8}


def test_cost_of_each_run_as_the_paper_prices_it():
    from utilann.report.cost import pool_passages, step_seconds

    seconds, passages = step_seconds(MANIFESTS), pool_passages(MANIFESTS)
    assert passages == 3100 and seconds["relsel"] == 3600.0

    def cost(run):
        return run_cost(run, SPECS, seconds, passages, 8, 0.8, 0.09)

    human = 3100 * 0.09  # $279: every pool passage judged once
    # UtilSel: RelSel + answer + UtilSel = 3,600 + 1,800 + 1,800 s = 2 h x 8 GPUs x $0.8
    assert cost("utilsel") == pytest.approx({"cost": 12.8, "hours": 2.0, "gpu_hours": 16.0})
    # UtilRank: RelSel + answer + UtilRank = 9,000 s = 2.5 h
    assert cost("utilrank")["gpu_hours"] == pytest.approx(20.0)
    assert cost("human") == pytest.approx({"cost": human, "hours": 0.0, "gpu_hours": 0.0})
    # CL 20 %: the UtilSel run it continues + 20 % of the human labels (paper: $339 + 20 % of
    # $1,369,910 = $274,321)
    assert cost("utilsel-cl20")["cost"] == pytest.approx(12.8 + 0.2 * human)
    assert cost("union20")["cost"] == pytest.approx(12.8 + 0.2 * human)
    assert all(math.isnan(v) for v in cost("replug").values())  # labels not from annotation


def test_table17_renders_cost_and_retrieval():
    rows = [("human", "ms", "dev", "RR@10", 0.386), ("utilsel", "ms", "dev", "RR@10", 0.353)]
    table = cost_table(SPECS, MANIFESTS, metrics(rows), ("ms", "dev"), ["RR@10"], PRICES)
    assert list(table.values.columns) == ["cost ($)", "LLM time (h)", "GPU-hours", "RR@10"]
    md = R.render_markdown(table)
    assert "| human | 279 | 0.0 | 0.0 | **38.6** |" in md
    assert "| utilsel | 13 | 2.0 | 16.0 | 35.3 |" in md
    assert "| replug | – | – | – | – |" in md


def test_dagger_markers_follow_the_main_markers():
    def row(baseline, marker):
        return (
            "utilsel",
            baseline,
            "ms",
            "dev",
            "RR@10",
            10,
            0.35,
            0.3,
            0.05,
            3.0,
            0.01,
            True,
            marker,
        )

    sig = pd.DataFrame([row("human", "-"), row("replug", "†")], columns=SIGNIFICANCE.names)
    assert significance_markers(sig) == {("utilsel", "ms", "dev", "RR@10"): "-†"}
    values = pd.DataFrame([[0.353]], index=pd.Index(["utilsel"], name="run"), columns=["RR@10"])
    marks = pd.DataFrame([["-†"]], index=values.index, columns=values.columns)
    table = R.ReportTable(title="t", values=values, markers=marks)
    assert r"\textsuperscript{$-$\dag{}}" in R.render_latex(table)
    assert "−†</sup>" in R.render_html(table)
    note = R.significance_note("human", 0.05, {"replug": ["utilsel"]})
    assert (
        "†: significantly different from the run's second baseline (utilsel against replug)" in note
    )


# Two generators answer MS MARCO QA with top 1 and top 5 (rag.generators: paper Tables 4, 13).
GENERATOR_TARGETS = [
    {
        "dataset": "ms",
        "split": f"{base}-{gen}",
        "base": base,
        "source_split": "dev",
        "top_k": k,
        "measures": ["BLEU-4", "ROUGE-L"],
        "generator": gen,
    }
    for base, k in (("dev", 1), ("dev-top5", 5))
    for gen in ("llama", "qwen")
]


def generator_rows():
    rows = []
    for run, shift in (("human", 0.0), ("utilsel", -0.01)):
        for t in GENERATOR_TARGETS:
            k, bleu = t["top_k"], 0.14 if t["generator"] == "llama" else 0.12
            rows += [
                (run, "ms", t["split"], f"R@{k}", (0.25 if k == 1 else 0.55) + shift),
                (run, "ms", t["split"], "BLEU-4", bleu + shift),
                (run, "ms", t["split"], "ROUGE-L", 0.35 + shift),
            ]
    return rows


def test_table4_has_recall_once_then_each_generators_measures():
    from utilann.report.tables import rag_table

    table = rag_table(metrics(generator_rows()), None, ["human", "utilsel"], GENERATOR_TARGETS)
    assert list(table.values.columns) == [
        ("ms/dev", "Recall"),
        ("ms/dev", "llama BLEU-4"),
        ("ms/dev", "llama ROUGE-L"),
        ("ms/dev", "qwen BLEU-4"),
        ("ms/dev", "qwen ROUGE-L"),
        ("ms/dev-top5", "Recall"),
        ("ms/dev-top5", "llama BLEU-4"),
        ("ms/dev-top5", "llama ROUGE-L"),
        ("ms/dev-top5", "qwen BLEU-4"),
        ("ms/dev-top5", "qwen ROUGE-L"),
    ]
    assert table.values.loc["utilsel"].tolist()[:5] == pytest.approx([0.24, 0.13, 0.34, 0.11, 0.34])


def test_table13_puts_both_generators_of_one_top_k_in_one_row():
    groups = topk_groups(GENERATOR_TARGETS)
    assert [[(t["top_k"], t["generator"]) for t in g] for g in groups] == [
        [(1, "llama"), (1, "qwen"), (5, "llama"), (5, "qwen")]
    ]
    table = topk_table(metrics(generator_rows()), None, ["human", "utilsel"], groups)
    assert list(table.values.columns) == [
        "Recall",
        "llama BLEU-4",
        "llama ROUGE-L",
        "qwen BLEU-4",
        "qwen ROUGE-L",
    ]
    assert list(table.values.index) == [
        ("ms/dev", "1", "human"),
        ("ms/dev", "1", "utilsel"),
        ("ms/dev", "5", "human"),
        ("ms/dev", "5", "utilsel"),
    ]
    assert table.values.loc[("ms/dev", "5", "human")].tolist() == pytest.approx(
        [0.55, 0.14, 0.35, 0.12, 0.35]
    )
