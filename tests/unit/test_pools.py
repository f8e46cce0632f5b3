"""Pool construction: positives first, judged passages never negatives, seeded caps."""

from __future__ import annotations

import pandas as pd

from utilann.pools import build_pools, sample_queries, shard_of

QRELS = pd.DataFrame(
    [("q1", "p1", 1), ("q1", "j1", 0), ("q2", "p2", 1), ("q2", "p3", 1), ("q3", "x", 0)],
    columns=["query_id", "doc_id", "relevance"],
)
QUERIES = pd.DataFrame(
    [("q1", "one"), ("q2", "two"), ("q3", "three")], columns=["query_id", "text"]
)
DOCS = ["p1", "p2", "p3", "j1", "n1", "n2", "n3", "x"]
CORPUS = pd.DataFrame(
    [(d, f"T{d}", f"text {d}") for d in DOCS], columns=["doc_id", "title", "text"]
)
RUN = pd.DataFrame(
    [("q1", d, r) for r, d in enumerate(["j1", "n1", "p1", "n2", "n3"], 1)]
    + [("q2", d, r) for r, d in enumerate(["p3", "n3", "n1"], 1)],
    columns=["query_id", "doc_id", "rank"],
)


def test_pools_layout():
    pools = build_pools(
        QRELS, QUERIES, CORPUS, RUN, negatives=2, max_queries=None, seed=0, source="bm25"
    )
    q1 = pools[pools["query_id"] == "q1"]
    assert q1["doc_id"].tolist() == [
        "p1",
        "n1",
        "n2",
    ]  # judged j1 (rel 0) and p1 skipped as negatives
    assert q1["source_rank"].tolist() == [0, 1, 2]
    q2 = pools[pools["query_id"] == "q2"]
    assert q2["doc_id"].tolist() == ["p2", "p3", "n3", "n1"] and q2["is_human_positive"].sum() == 2
    assert "q3" not in set(pools["query_id"])  # no positive judgement
    assert pools.loc[pools["doc_id"] == "n1", "text"].iloc[0] == "text n1"


def test_sampling_is_seeded_and_sharding_keeps_queries_whole():
    ids = [f"q{i}" for i in range(100)]
    assert sample_queries(ids, 10, seed=3) == sample_queries(list(reversed(ids)), 10, seed=3)
    assert sample_queries(ids, 10, seed=3) != sample_queries(ids, 10, seed=4)
    pools = build_pools(
        QRELS, QUERIES, CORPUS, RUN, negatives=2, max_queries=None, seed=0, source="bm25"
    )
    shards = shard_of(pools, 2)
    assert [sorted(s["query_id"].unique()) for s in shards] == [["q1"], ["q2"]]
    assert sum(len(s) for s in shards) == len(pools)


def test_shuffle_permutes_positives_and_negatives_separately_and_is_seeded():
    run = pd.DataFrame(
        [("q2", f"m{i}", i) for i in range(1, 21)], columns=["query_id", "doc_id", "rank"]
    )
    docs = pd.DataFrame(
        [(d, "", d) for d in ["p2", "p3"] + [f"m{i}" for i in range(1, 21)]],
        columns=["doc_id", "title", "text"],
    )
    kwargs = dict(negatives=20, max_queries=None, seed=0, source="bm25")
    plain = build_pools(QRELS, QUERIES, docs, run, **kwargs)
    shuffled = build_pools(QRELS, QUERIES, docs, run, **kwargs, shuffle=True, shuffle_seed=0)
    again = build_pools(QRELS, QUERIES, docs, run, **kwargs, shuffle=True, shuffle_seed=0)
    other = build_pools(QRELS, QUERIES, docs, run, **kwargs, shuffle=True, shuffle_seed=1)
    assert shuffled.equals(again) and not shuffled.equals(other)
    q2 = shuffled[shuffled["query_id"] == "q2"]
    # positives still first, negatives after; the same passages, in another order
    assert q2["is_human_positive"].tolist() == [True, True] + [False] * 20
    assert q2["position"].tolist() == list(range(22))
    assert set(q2["doc_id"][:2]) == {"p2", "p3"}
    negatives = q2["doc_id"][2:].tolist()
    assert sorted(negatives) == sorted(plain[plain["query_id"] == "q2"]["doc_id"][2:])
    assert negatives != plain[plain["query_id"] == "q2"]["doc_id"][2:].tolist()
    # source_rank keeps the rank before the shuffle
    assert all(r == int(d[1:]) for d, r in zip(negatives, q2["source_rank"][2:]))
