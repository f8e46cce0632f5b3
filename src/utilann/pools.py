"""Candidate pools for annotation: human positive(s) plus the top-n hard negatives.

The paper annotates, for every training query, a fixed pool of 1 human positive + 30 hard
negatives (BM25/coCondenser from the RepLLaMA file). Here the negatives come either from a
BM25 run (``source="bm25"``) or from the negatives shipped with the dataset
(``source="dataset"``: Tevatron files). A passage judged relevant is never a negative.
Pools are deterministic given the seed: the query sample and the shard assignment depend only
on the sorted query ids and the seed.

Order: the human positive(s) come first, then the negatives (``position`` 0, 1, ...). With
``shuffle`` each query's positive list and negative list are shuffled, each on its own, as the
authors shuffled the RepLLaMA file's lists with ``random.seed(0)`` before annotating
(process.ipynb, first cell); ``source_rank`` keeps the rank before the shuffle. The shuffle
happens here, once, so the annotation windows (which split the negatives in pool order under
``fixed_first``) and training read the same order. Each query is shuffled by its own
generator, seeded by ``(shuffle_seed, query_id)``: the order does not depend on the query
sample, the sharding or the file order - the same kind of permutation as the authors', not
their exact one (theirs depends on the position of every query in their file).
"""

from __future__ import annotations

import random

import pandas as pd

from . import schemas

SOURCES = ("bm25", "dataset")


def sample_queries(query_ids: list[str], max_queries: int | None, seed: int) -> list[str]:
    """Sorted ids, then a seeded sample of at most ``max_queries`` (None = all)."""
    ids = sorted(set(query_ids))
    if max_queries is not None and max_queries < len(ids):
        ids = sorted(random.Random(seed).sample(ids, max_queries))
    return ids


def build_pools(
    qrels: pd.DataFrame,
    queries: pd.DataFrame,
    corpus: pd.DataFrame,
    candidates: pd.DataFrame,
    negatives: int,
    max_queries: int | None,
    seed: int,
    source: str,
    shuffle: bool = False,
    shuffle_seed: int = 0,
) -> pd.DataFrame:
    """Return the POOLS table for the training queries in ``qrels`` (one split).

    ``candidates`` is a ranked list (query_id, doc_id, rank): a BM25 run or the dataset's own
    negatives. The top ``negatives`` are kept, then (``shuffle``) each query's positives and
    negatives are shuffled separately (module docstring). Queries without any positive
    judgement are skipped.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown pool source {source!r}; expected one of {SOURCES}")
    positives = qrels[qrels["relevance"] > 0]
    judged = qrels.groupby("query_id")["doc_id"].agg(set).to_dict()
    qids = sample_queries(positives["query_id"].astype(str).tolist(), max_queries, seed)
    texts = queries.set_index("query_id")["text"]
    ranked = (
        candidates[candidates["query_id"].isin(qids)]
        .sort_values(["query_id", "rank"], kind="stable")
        .groupby("query_id")["doc_id"]
        .agg(list)
        .to_dict()
    )
    pos_by_query = positives.groupby("query_id")["doc_id"].agg(lambda s: sorted(set(s))).to_dict()
    rows: list[tuple] = []
    negs_source = "bm25" if source == "bm25" else "file"
    for qid in qids:
        humans = [(did, True, "human", 0) for did in pos_by_query[qid]]
        negs = [d for d in ranked.get(qid, []) if d not in judged.get(qid, set())][:negatives]
        others = [(did, False, negs_source, rank) for rank, did in enumerate(negs, start=1)]
        if shuffle:
            rng = random.Random(f"{shuffle_seed}:{qid}")
            rng.shuffle(humans)
            rng.shuffle(others)
        rows += [(qid, texts[qid], pos, *entry) for pos, entry in enumerate(humans + others)]
    pools = pd.DataFrame(
        rows,
        columns=[
            "query_id",
            "query",
            "position",
            "doc_id",
            "is_human_positive",
            "source",
            "source_rank",
        ],
    )
    docs = corpus.set_index("doc_id")[["title", "text"]]
    pools = pools.join(docs, on="doc_id")
    return pools[schemas.POOLS.names]


def shard_of(pools: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """Split pools into ``n_shards`` contiguous groups of whole queries (sorted ids)."""
    qids = sorted(pools["query_id"].unique())
    bounds = [round(i * len(qids) / n_shards) for i in range(n_shards + 1)]
    return [
        pools[pools["query_id"].isin(set(qids[bounds[i] : bounds[i + 1]]))].reset_index(drop=True)
        for i in range(n_shards)
    ]
