"""Helpers around run tables shared by the BM25 and dense retrieval stages."""

from __future__ import annotations

import pandas as pd

from utilann.datasets import split_qrels


def split_queries(queries: pd.DataFrame, qrels: pd.DataFrame, split: str) -> pd.DataFrame:
    """The queries judged in ``split`` (BEIR keeps all splits' queries in one file)."""
    ids = set(split_qrels(qrels, split)["query_id"])
    return queries[queries["query_id"].isin(ids)].sort_values("query_id").reset_index(drop=True)


def search_depth(depth: int, remove_query: bool) -> int:
    """How many hits to ask the searcher for: one more when the query's own id is removed
    afterwards, so that every query still gets ``depth`` results (BEIR's exact dense search
    asks for top_k + 1 for the same reason)."""
    return depth + 1 if remove_query else depth


def remove_query_hits(run: pd.DataFrame, depth: int) -> tuple[pd.DataFrame, int]:
    """Drop every hit whose document id is its query's own id, re-rank, cut to ``depth``.

    In collections whose queries are documents of the corpus (BEIR ArguAna: an argument
    retrieves its counter-argument; Quora: a question retrieves its duplicates) the query
    itself would be the top hit of every run. BEIR's ``EvaluateRetrieval`` (with
    ``ignore_identical_ids``, its default) and pyserini's ``--remove-query`` drop it; this is
    the same rule, applied to the run itself so that every measure, the RAG passages and the
    significance tests see the cleaned list. Returns the run (RUN schema, ranks 1..n per
    query, the order of the remaining hits unchanged) and the number of hits removed.
    """
    own = run["doc_id"].astype(str) == run["query_id"].astype(str)
    kept = run[~own].sort_values(["query_id", "rank"], kind="stable")
    kept = kept.assign(rank=kept.groupby("query_id", sort=False).cumcount() + 1)
    kept = kept[kept["rank"] <= depth].astype({"rank": "int32"}).reset_index(drop=True)
    return kept, int(own.sum())
