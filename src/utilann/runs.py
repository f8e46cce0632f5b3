"""Helpers around run tables shared by the BM25 and dense retrieval stages."""

from __future__ import annotations

import pandas as pd


def split_queries(queries: pd.DataFrame, qrels: pd.DataFrame, split: str) -> pd.DataFrame:
    """The queries judged in ``split`` (BEIR keeps all splits' queries in one file)."""
    ids = set(qrels.loc[qrels["split"] == split, "query_id"])
    if not ids:
        raise ValueError(
            f"no qrels for split {split!r}; available: {sorted(qrels['split'].unique())}"
        )
    return queries[queries["query_id"].isin(ids)].sort_values("query_id").reset_index(drop=True)
