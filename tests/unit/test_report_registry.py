"""The report registry: which tables and figures an experiment has, and building each one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from utilann import report as R
from utilann.io import write_table
from utilann.report.newcorpus import generated_queries_table, source_annotation_table
from utilann.schemas import (
    ANNOTATION_REPORT,
    AUDIT_SUMMARY,
    GENERATED_QUERIES,
    INJECTION_SUMMARY,
    LABELS,
    METRICS,
    QRELS,
    SIGNIFICANCE,
)

REPO = Path(__file__).resolve().parents[2]


def spec(label_source, loss, positive_sampling, **extra):
    """A run's flat settings; keys a comparison does not look at are left out."""
    return {
        "label_source": label_source,
        "loss": loss,
        "positive_sampling": positive_sampling,
        "init_from": None,
        **extra,
    }


SPECS = {
    "human": spec("human", "SingleLH", "single"),
    "utilsel": spec("utilsel", "SumMargLH", "pos_all"),
    "utilrank": spec("utilrank", "Rand1LH", "single", utilrank_threshold=10.0),
}

SETTINGS = R.ReportSettings(
    experiment="demo",
    runs=["bm25", "human", "utilsel", "utilrank"],
    evaluation=[{"dataset": "scifact", "split": "test", "measures": ["nDCG@10", "RR@10"]}],
    dataset_measure="nDCG@10",
    bm25={"variant": "flat", "k1": 0.9, "b": 0.4},
    rag_runs=[],
    rag_targets=[],
    generator="smollm2",
    specs={},
    primary={"dataset": "scifact", "split": "test", "measures": ["nDCG@10"], "measure": "RR@10"},
    baseline="bm25",
    alpha=0.05,
    annotation=False,
)


def keys(entries):
    return [e.key for e in entries]


def test_every_entry_has_its_caption_and_a_unique_key():
    for entry in [*R.TABLES.values(), *R.FIGURES.values()]:
        assert (REPO / "workflow" / "report" / entry.caption).is_file(), entry.key
    assert len({*R.TABLES, *R.FIGURES}) == len(R.TABLES) + len(R.FIGURES)


def test_retrieval_only_experiment_has_table_2_only():
    assert keys(R.tables_for(SETTINGS)) == ["table2_retrieval"]
    assert R.figures_for(SETTINGS) == []


def test_each_table_and_figure_follows_its_config_condition():
    full = dataclasses.replace(
        SETTINGS,
        evaluation=[*SETTINGS.evaluation, {"dataset": "nq", "split": "test", "measures": ["R@5"]}],
        rag_targets=[{"dataset": "nq", "split": "test", "top_k": 5, "measures": ["EM"]}],
        specs=SPECS,
        baseline="human",
        annotation=True,
    )
    assert keys(R.tables_for(full)) == [
        "table1_annotation",
        "table2_retrieval",
        "table3_datasets",
        "table4_rag",
        "table6_controlled",
        "table17_cost",
    ]
    assert keys(R.figures_for(full)) == ["fig3b_utilrank_threshold"]
    # Table 9 with an Acc@k target, Table 13 with one split answered at two top-k
    paper = dataclasses.replace(
        full,
        evaluation=[
            *full.evaluation,
            {"dataset": "nq", "split": "dev", "measures": ["Acc@20", "Acc@100"]},
        ],
        rag_targets=[
            {
                "dataset": "ms",
                "split": "dev",
                "source_split": "dev",
                "top_k": 1,
                "measures": ["EM"],
            },
            {
                "dataset": "ms",
                "split": "dev5",
                "source_split": "dev",
                "top_k": 5,
                "measures": ["EM"],
            },
        ],
    )
    assert {"table9_accuracy", "table13_rag_topk"} <= set(keys(R.tables_for(paper)))
    assert "table9_accuracy" not in keys(R.tables_for(full))
    assert "table13_rag_topk" not in keys(R.tables_for(full))
    # Table 3 needs a zero-shot target: an in-domain-only experiment has Table 2 only
    in_domain = [{**t, "group": "in-domain"} for t in full.evaluation]
    assert "table3_datasets" not in keys(
        R.tables_for(dataclasses.replace(full, evaluation=in_domain))
    )
    # no evaluation target: no Table 6 (it needs the primary target's measures), no Figure 3a
    assert "table6_controlled" not in keys(R.tables_for(dataclasses.replace(full, primary=None)))
    # Figure 3a needs one run continued with human labels at two ratios
    cl = {
        **SPECS,
        "cl20": spec("human", "SingleLH", "single", init_from="utilsel", query_ratio=0.2),
        "cl100": spec("human", "SingleLH", "single", init_from="utilsel"),
    }
    assert keys(R.figures_for(dataclasses.replace(full, specs=cl)))[-1] == "fig3a_human_ratio"
    # the audits' tables when they run
    audited = dataclasses.replace(full, audits=("false_negatives", "injection"))
    assert {"audit1_false_negatives", "audit2_injection"} <= set(keys(R.tables_for(audited)))
    only_fn = keys(R.tables_for(dataclasses.replace(full, audits=("false_negatives",))))
    assert "audit1_false_negatives" in only_fn and "audit2_injection" not in only_fn


def test_report_labels_and_output_names():
    table3 = R.TABLES["table3_datasets"]
    assert table3.labels(SETTINGS) == {"table": "Table 3", "shows": "nDCG@10"}
    assert table3.caption == "table3_datasets.rst" and table3.category == "2. Retrieval"
    assert [table3.output_name(f) for f in R.TABLE_FORMATS] == [
        "table3_datasets",
        "table3_datasets_md",
        "table3_datasets_tex",
    ]
    fig = R.FIGURES["fig3b_utilrank_threshold"]
    assert fig.title == "Figure 3b: UtilRank threshold"
    assert fig.labels() == {"figure": "Figure 3b", "shows": "UtilRank threshold"}


def metrics(rows):
    return pd.DataFrame(rows, columns=METRICS.names)


@pytest.fixture
def inputs(tmp_path):
    """The report's input files, written as the pipeline writes them."""
    retrieval = []
    for run, value in [("bm25", 0.6), ("human", 0.7), ("utilsel", 0.72), ("utilrank", 0.69)]:
        path = tmp_path / f"{run}.metrics.parquet"
        write_table(metrics([(run, "scifact", "test", "RR@10", value)]), path, METRICS)
        retrieval.append(str(path))
    rag = tmp_path / "rag.metrics.parquet"
    write_table(
        metrics([("human", "nq", "test", "EM", 0.3), ("human", "nq", "test", "R@5", 0.5)]),
        rag,
        METRICS,
        {"dataset": "nq", "split": "test", "questions": 8},
    )
    sig = tmp_path / "significance.parquet"
    write_table(pd.DataFrame(columns=SIGNIFICANCE.names), sig, SIGNIFICANCE)
    annotation = tmp_path / "report.parquet"
    report = pd.DataFrame(
        [["utilsel", "utilsel", None, 8, 8, 9, 1.1, 0.5, 0.6, 1, 16, 2, 0, 100, 10, 1.5, 6.7]],
        columns=ANNOTATION_REPORT.names,
    )
    write_table(report, annotation, ANNOTATION_REPORT, {"model": "smollm2"})
    return R.ReportInputs.read(
        retrieval,
        [str(rag)],
        str(sig),
        str(annotation),
        **newcorpus_inputs(tmp_path),
        **audit_inputs(tmp_path),
    )


def audit_inputs(tmp_path):
    """The audits' summaries: 2 of 20 negatives judged useful; one attack against the control."""
    negatives = pd.DataFrame(
        [["scifact", "train", 4, 20, 2, 0.1, 0.028, 0.301, 4, 0.75, 3, 2]],
        columns=AUDIT_SUMMARY.names,
    )
    injection = pd.DataFrame(
        [
            ["utilsel", "none", "none", 4, 0.25, 0.05, 0.7, 0.25, 0.0, 0, 0, 1.0, 1.0, 0],
            ["utilsel", "obey", "instruction", 4, 0.75, 0.3, 0.95, 0.25, 0.5, 2, 0, 0.5, 1.0, 1],
        ],
        columns=INJECTION_SUMMARY.names,
    )
    paths = {}
    for name, table, schema in [
        ("false_negatives", negatives, AUDIT_SUMMARY),
        ("injection", injection, INJECTION_SUMMARY),
    ]:
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_table(table, paths[name], schema)
    return paths


def newcorpus_inputs(tmp_path):
    """The new-corpus tables' inputs: two generated candidates (one kept), one unlabelled."""
    row = dict.fromkeys(GENERATED_QUERIES.names)
    candidates = pd.DataFrame(
        [
            {
                **row,
                "query_id": "gen-d1",
                "origin": "generated",
                "source_doc_id": "d1",
                "status": "kept",
            },
            {
                **row,
                "query_id": "gen-d2",
                "origin": "generated",
                "source_doc_id": "d2",
                "status": "round_trip",
            },
            {**row, "query_id": "q9", "origin": "unlabelled", "status": "kept"},
        ]
    ).astype({"round_trip_rank": "Int32"})
    labels = pd.DataFrame(
        [
            ("gen-d1", "d1", 0, False, "utilsel", True, None, None),
            ("gen-d1", "d3", 1, False, "utilsel", False, None, None),
        ],
        columns=LABELS.names,
    )
    qrels = pd.DataFrame([("gen-d1", "d1", 1, "generated")], columns=QRELS.names)
    paths = {}
    for name, table, schema in [
        ("candidates", candidates, GENERATED_QUERIES),
        ("labels", labels, LABELS),
        ("pseudo_qrels", qrels, QRELS),
    ]:
        paths[name] = str(tmp_path / f"{name}.parquet")
        write_table(table, paths[name], schema)
    return paths


def test_inputs_are_read_with_their_metadata(inputs):
    assert sorted(inputs.retrieval["run"]) == ["bm25", "human", "utilrank", "utilsel"]
    assert inputs.rag_questions == {("nq", "test"): 8}
    assert inputs.annotation_meta["model"] == "smollm2"
    assert inputs.significance.empty


def test_every_table_builds_with_its_notes_and_renders(inputs):
    settings = dataclasses.replace(
        SETTINGS,
        rag_runs=["human"],
        rag_targets=[{"dataset": "nq", "split": "test", "top_k": 5, "measures": ["EM"]}],
        specs={
            **SPECS,
            "cl10": spec("human", "SingleLH", "pos_one", init_from="utilsel", query_ratio=0.1),
            "active10": spec(
                "human",
                "SingleLH",
                "pos_one",
                init_from="utilsel",
                query_ratio=0.1,
                query_selection="relsel_utilsel",
            ),
        },
        baseline="human",
        annotation=True,
        newcorpus={
            "dataset": "scifact",
            "split": "generated",
            "judged_positives": "candidate",
            "round_trip_k": 20,
            "oracle": "scifact/train",
        },
        audits=("false_negatives", "injection"),
    )
    for entry in R.TABLES.values():
        table = entry.build(settings, inputs)
        assert table.notes == entry.notes(settings, inputs) and table.notes
        rendered = entry.render(table)
        assert list(rendered) == list(R.TABLE_FORMATS)
        assert rendered["tex"].count(f"\\label{{tab:{entry.key}}}") == 1
    assert "Annotator: smollm2." in R.TABLES["table1_annotation"].notes(settings, inputs)[0]
    assert "Questions: nq/test: 8." in R.TABLES["table4_rag"].notes(settings, inputs)[1]
    rag = R.TABLES["table4_rag"].build(settings, inputs)
    assert list(rag.values.columns) == [("nq/test", "R@5"), ("nq/test", "EM")]
    controlled = R.TABLES["table6_controlled"].build(settings, inputs)
    assert controlled.values.index[0] == ("—", "Human", "human")
    fn = R.TABLES["audit1_false_negatives"].build(settings, inputs)
    assert fn.values.index[0] == ("scifact", "train")
    assert (
        "| scifact | train | 4 | 20 | 2 | 10.0 | 2.8 | 30.1 | 75.0 | 3 | 2 |"
        in (R.TABLES["audit1_false_negatives"].render(fn)["md"])
    )
    attack = R.TABLES["audit2_injection"].build(settings, inputs)
    assert list(attack.values.index) == [
        ("utilsel", "none", "none"),
        ("utilsel", "instruction", "obey"),
    ]
    assert attack.values.loc[("utilsel", "instruction", "obey"), "lift"] == 0.5


def test_new_corpus_tables_count_filters_and_the_source_passage(inputs):
    queries = generated_queries_table(inputs.candidates).values["queries"]
    assert queries[("generated", "passages sampled = questions asked")] == 2
    assert queries[("removed", "source passage not in the BM25 top k")] == 1
    assert queries[("kept", "generated questions kept")] == 1
    assert queries[("added", "unlabelled queries of the dataset")] == 1
    assert queries[("split", "training queries")] == 2
    annotation = source_annotation_table(
        inputs.annotation, inputs.labels, inputs.pseudo_qrels
    ).values
    # gen-d1's source d1 is in its pool and UtilSel selected it
    assert annotation.loc["utilsel", "source in pool"] == 1.0
    assert annotation.loc["utilsel", "source chosen"] == 1.0
