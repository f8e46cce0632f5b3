"""Helpers around run tables shared by the BM25 and dense retrieval stages."""

from __future__ import annotations

import pandas as pd

from utilann.datasets import split_qrels


def split_queries(queries: pd.DataFrame, qrels: pd.DataFrame, split: str) -> pd.DataFrame:
    """The queries judged in ``split`` (BEIR keeps all splits' queries in one file)."""
    ids = set(split_qrels(qrels, split)["query_id"])
    return queries[queries["query_id"].isin(ids)].sort_values("query_id").reset_index(drop=True)
