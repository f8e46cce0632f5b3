"""End-to-end: SciFact -> Parquet -> BM25 -> pools -> evaluation, and rerun behaviour."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import Workflow, planned_jobs

pytestmark = pytest.mark.e2e

CONFIG = {
    "experiment": "foundation",
    "datasets": {"scifact": {"format": "beir"}},
    "corpus": {"shard_size": 2000},
    "train": {"dataset": "scifact", "split": "train"},
    "evaluation": {"targets": [{"dataset": "scifact", "split": "test"}]},
    "pools": {"negatives": 30, "max_queries": 40, "seed": 0, "shards": 2},
}
# The BM25 stage's own outputs: the experiment's metrics.parquet also waits for the dense and
# RAG stages of the default config, which are tested in their own modules.
METRICS = "results/foundation/eval/bm25/scifact.test.metrics.parquet"
TARGETS = [METRICS, "results/foundation/pools/shard-0.parquet"]


@pytest.fixture(scope="module")
def bm25_workflow(tmp_path_factory, scifact_dir) -> Workflow:
    wf = Workflow(tmp_path_factory.mktemp("foundation"))
    wf.add_dataset("scifact", scifact_dir)
    wf.write_config("config.yaml", CONFIG)
    wf.run(*TARGETS, config="config.yaml")
    return wf


def test_bm25_scifact_matches_pyserini(bm25_workflow):
    metrics = pd.read_parquet(bm25_workflow.workdir / METRICS)
    row = metrics.query(
        "run == 'bm25' and dataset == 'scifact' and split == 'test' and measure == 'nDCG@10'"
    )
    assert len(row) == 1
    assert 0.676 <= row["value"].item() <= 0.682  # pyserini's published BEIR flat: 0.679
    assert set(metrics["measure"]) == {"nDCG@10", "RR@10", "R@100", "R@1000"}
    assert list(metrics.columns) == ["run", "dataset", "split", "measure", "value"]


def test_artifacts_have_documented_schemas(bm25_workflow):
    root = bm25_workflow.workdir / "results"
    corpus = pd.read_parquet(root / "datasets/scifact/corpus")
    assert list(corpus.columns) == ["doc_id", "title", "text"] and len(corpus) == 5183
    assert len(list((root / "datasets/scifact/corpus").glob("shard-*.parquet"))) == 3
    qrels = pd.read_parquet(root / "datasets/scifact/qrels.parquet")
    assert set(qrels["split"]) == {"train", "test"}
    run = pd.read_parquet(root / "foundation/runs/bm25/scifact.test.parquet")
    assert run["query_id"].nunique() == 300 and run["rank"].min() == 1
    trec = (root / "foundation/runs/bm25/scifact.test.trec").read_text().splitlines()
    assert len(trec) == len(run) and trec[0].split()[1] == "Q0"
    per_query = pd.read_parquet(root / "foundation/eval/bm25/scifact.test.perquery.parquet")
    assert per_query["query_id"].nunique() == 300


def test_pools_are_human_positives_plus_bm25_negatives(bm25_workflow):
    root = bm25_workflow.workdir / "results/foundation/pools"
    pools = pd.concat([pd.read_parquet(root / f"shard-{i}.parquet") for i in range(2)])
    assert pools["query_id"].nunique() == 40
    qrels = pd.read_parquet(bm25_workflow.workdir / "results/datasets/scifact/qrels.parquet")
    judged = set(zip(qrels["query_id"], qrels["doc_id"]))
    for qid, group in pools.groupby("query_id"):
        group = group.sort_values("position")
        humans = group[group["is_human_positive"]]
        assert list(group["position"]) == list(range(len(group)))
        assert (group["is_human_positive"].iloc[: len(humans)]).all()  # positives first
        negatives = group[~group["is_human_positive"]]
        assert len(negatives) == 30 and (negatives["source"] == "bm25").all()
        assert not any((qid, d) in judged for d in negatives["doc_id"])
        assert group["text"].notna().all()


def test_second_dry_run_has_nothing_to_do(bm25_workflow):
    proc = bm25_workflow.run("-n", *TARGETS, config="config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_k1_reruns_only_search_pools_and_evaluation(bm25_workflow):
    bm25_workflow.write_config("k1.yaml", {**CONFIG, "bm25": {"k1": 1.2}})
    proc = bm25_workflow.run("-n", *TARGETS, config="k1.yaml")
    jobs = planned_jobs(proc.stdout)
    assert jobs == {"bm25_search": 2, "build_pools": 1, "evaluate_run": 1}, proc.stdout


def test_changing_a_measure_reruns_only_the_evaluation(bm25_workflow):
    evaluation = {**CONFIG["evaluation"], "measures": ["nDCG@10", "R@100"]}
    bm25_workflow.write_config("measures.yaml", {**CONFIG, "evaluation": evaluation})
    proc = bm25_workflow.run("-n", *TARGETS, config="measures.yaml")
    assert planned_jobs(proc.stdout) == {"evaluate_run": 1}, proc.stdout
