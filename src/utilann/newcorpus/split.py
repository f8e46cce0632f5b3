"""The new-corpus training split: kept candidates -> a queries table and pseudo-qrels.

The split is an ordinary dataset split (QUERIES and QRELS tables, ``split`` = its name), so
BM25, the pools, annotation and training read it like any other. Its qrels are *pseudo*
judgements: each generated query's source passage with relevance 1, marked ``pseudo`` in the
table's metadata. Unlabelled queries of the dataset (e.g. a query log) may join it: they have
no judgement at all, so they enter pools (``pools.judged_positives: candidate | excluded``)
but never give a "human" positive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from utilann.newcorpus.filters import HELDOUT, KEPT, duplicate_mask
from utilann.newcorpus.generate import GENERATED, ID_PREFIX
from utilann.pools import sample_queries
from utilann.schemas import GENERATED_QUERIES

UNLABELLED = "unlabelled"
"""``origin`` of a query of the dataset taken without its judgements."""
ORIGINS = (GENERATED, UNLABELLED)


def mark_duplicates(table: pd.DataFrame) -> int:
    """Set ``status`` ``duplicate`` on kept queries repeating an earlier one; return how many."""
    kept = table["status"] == KEPT
    repeated = duplicate_mask(table[kept])
    table.loc[repeated[repeated].index, "status"] = "duplicate"
    return int(repeated.sum())


def mark_round_trip(table: pd.DataFrame, ranks: Mapping[str, int | None]) -> int:
    """Record each checked query's source rank; ``round_trip`` where it was not retrieved."""
    checked = table["query_id"].isin(ranks.keys())
    table.loc[checked, "round_trip_rank"] = table.loc[checked, "query_id"].map(ranks)
    table["round_trip_rank"] = table["round_trip_rank"].astype("Int32")
    failed = checked & table["round_trip_rank"].isna()
    table.loc[failed, "status"] = "round_trip"
    return int(failed.sum())


def mark_heldout(table: pd.DataFrame, ratio: float, seed: int) -> int:
    """Set ``status`` ``heldout`` on a seeded ``ratio`` share of the kept generated queries
    (at least one; :func:`utilann.train.data.sample_fraction`); return how many.

    They become the held-out split: questions the retriever is not trained on, each judged by
    its source passage, for a corpus that has no test queries of its own.
    """
    from utilann.train.data import sample_fraction

    kept = table[(table["status"] == KEPT) & (table["origin"] == GENERATED)]
    if len(kept) < 2:
        raise ValueError(
            f"newcorpus.heldout needs at least 2 kept generated questions to hold some out "
            f"and train on the rest, got {len(kept)}: sample more passages "
            "(newcorpus.passages.count)"
        )
    picked = sample_fraction(kept["query_id"].astype(str), ratio, seed)
    if len(picked) == len(kept):
        picked = set(sorted(picked)[:-1])  # keep one to train on
    table.loc[table["query_id"].astype(str).isin(picked), "status"] = HELDOUT
    return len(picked)


def unlabelled_queries(
    queries: pd.DataFrame,
    judged: Sequence[pd.DataFrame],
    max_queries: int | None,
    seed: int,
) -> pd.DataFrame:
    """GENERATED_QUERIES rows for the dataset's queries that none of ``judged`` (the qrels of
    its evaluation splits) names: a seeded sample of at most ``max_queries`` (None = all).

    Evaluation queries are never training queries, whatever their text.
    """
    excluded = set().union(*(set(q["query_id"].astype(str)) for q in judged))
    ids = [q for q in queries["query_id"].astype(str) if q not in excluded]
    picked = set(sample_queries(ids, max_queries, seed))
    rows = queries[queries["query_id"].astype(str).isin(picked)].sort_values("query_id")
    clash = [q for q in rows["query_id"] if str(q).startswith(ID_PREFIX)]
    if clash:
        raise ValueError(
            f"unlabelled query id {clash[0]!r} starts with {ID_PREFIX!r}, the prefix of "
            "generated query ids: rename it in the dataset"
        )
    table = pd.DataFrame(
        {
            "query_id": rows["query_id"].astype(str),
            "origin": UNLABELLED,
            "source_doc_id": None,
            "text": rows["text"].astype(str),
            "raw_text": None,
            "status": KEPT,
            "self_check": None,
            "round_trip_rank": None,
            "cache_key": None,
            "from_cache": None,
            "prompt_tokens": 0,
            "output_tokens": 0,
            "gen_seconds": 0.0,
        },
        columns=GENERATED_QUERIES.names,
    )
    table["round_trip_rank"] = table["round_trip_rank"].astype("Int32")
    return table.reset_index(drop=True)


def split_tables(
    candidates: pd.DataFrame, split: str, status: str = KEPT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The split's QUERIES (every candidate of ``status``: ``kept`` for the training split,
    ``heldout`` for the held-out one) and pseudo QRELS (the generated ones' sources)."""
    kept = candidates[candidates["status"] == status].sort_values("query_id")
    queries = kept[["query_id", "text"]].reset_index(drop=True)
    generated = kept[kept["origin"] == GENERATED]
    qrels = pd.DataFrame(
        {
            "query_id": generated["query_id"],
            "doc_id": generated["source_doc_id"],
            "relevance": 1,
            "split": split,
        }
    ).reset_index(drop=True)
    return queries, qrels
