"""Run cleaning: a query's own document never appears in its run (``remove_query``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from utilann import schemas
from utilann.dense import build_index, search
from utilann.evaluation import evaluate_run
from utilann.plan import remove_query
from utilann.runs import remove_query_hits, search_depth

# A toy ArguAna: the queries are arguments of the corpus itself; each one's counter-argument
# is its relevant document. Vectors are chosen so that a query's nearest document is itself,
# the next its counter-argument.
DOCS = ["a1", "a2", "b1", "b2", "c1"]
VECTORS = np.array(
    [[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.9, 0.1], [0.0, 0.0, 1.0]],
    dtype=np.float32,
)
QRELS = pd.DataFrame(
    [("a1", "a2", 1), ("b1", "b2", 1)], columns=["query_id", "doc_id", "relevance"]
)


def toy_run(depth: int) -> pd.DataFrame:
    index = build_index(VECTORS, use_gpu=False)
    return search(index, DOCS, ["a1", "b1"], VECTORS[[0, 2]], depth)


def test_the_query_is_its_own_top_hit_without_cleaning():
    run = toy_run(3)
    assert run.groupby("query_id")["doc_id"].first().to_dict() == {"a1": "a1", "b1": "b1"}
    rr = evaluate_run(run, QRELS, ["RR@10"])
    assert rr["value"].tolist() == [0.5, 0.5]


def test_removing_the_query_keeps_the_depth_and_renumbers_ranks():
    depth = 3
    run, removed = remove_query_hits(toy_run(search_depth(depth, True)), depth)
    assert removed == 2
    assert not (run["doc_id"] == run["query_id"]).any()
    assert run.groupby("query_id").size().tolist() == [depth, depth]
    assert run.groupby("query_id")["rank"].apply(list).tolist() == [[1, 2, 3], [1, 2, 3]]
    assert run[run["query_id"] == "a1"]["doc_id"].tolist() == ["a2", "b2", "b1"]
    rr = evaluate_run(run, QRELS, ["RR@10"])
    assert rr["value"].tolist() == [1.0, 1.0]
    assert list(run.columns) == schemas.RUN.names and run["rank"].dtype == "int32"


def test_hits_of_other_queries_are_untouched():
    run = pd.DataFrame(
        [("q1", "d1", 1, 3.0), ("q1", "q1", 2, 2.0), ("q1", "d2", 3, 1.0), ("q2", "q1", 1, 5.0)],
        columns=schemas.RUN.names,
    )
    cleaned, removed = remove_query_hits(run, depth=10)
    assert removed == 1
    assert list(zip(cleaned["query_id"], cleaned["doc_id"], cleaned["rank"])) == [
        ("q1", "d1", 1),
        ("q1", "d2", 2),
        ("q2", "q1", 1),
    ]


def test_search_depth_asks_one_more_only_when_cleaning():
    assert search_depth(1000, True) == 1001 and search_depth(1000, False) == 1000


def test_remove_query_defaults_follow_the_layout():
    config = {
        "datasets": {
            "arguana": {"format": "beir"},
            "msmarco": {"format": "msmarco"},
            "train": {"format": "tevatron"},
            "kept": {"format": "beir", "remove_query": False},
            "forced": {"format": "msmarco", "remove_query": True},
        }
    }
    assert [remove_query(config, d) for d in config["datasets"]] == [
        True,
        False,
        False,
        False,
        True,
    ]
