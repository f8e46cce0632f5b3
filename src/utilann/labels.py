"""From label tables to the positives a retriever is trained on.

Kept apart from annotation and training because both sides need the same rule: the annotation
report measures precision/recall of exactly the positives the trainer will see.
"""

from __future__ import annotations

import math

import pandas as pd

STRATEGIES = ("relsel", "utilsel", "utilrank")
EMPTY_POLICIES = ("drop", "keep", "human")


def utilrank_cutoff(list_length: int, threshold: float) -> int:
    """Number of UtilRank positives: floor(k % x N), at least one (digest 3.5)."""
    if not 0 < threshold <= 100:
        raise ValueError(f"UtilRank threshold must be in (0, 100], got {threshold}")
    if list_length <= 0:
        return 0
    return max(1, math.floor(threshold / 100.0 * list_length + 1e-9))


def derive_positives(
    labels: pd.DataFrame, strategy: str, utilrank_threshold: float | None = None
) -> pd.DataFrame:
    """Return the (query_id, doc_id) positives of ``strategy`` from a LABELS table.

    Every query present in ``labels`` for that strategy keeps a row in the result's index of
    queries, so callers can count queries left without a positive (see :func:`split_empty`).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    rows = labels[labels["strategy"] == strategy]
    if strategy == "utilrank":
        if utilrank_threshold is None:
            raise ValueError("utilrank positives need a threshold (k %)")
        cut = rows["list_length"].map(lambda n: utilrank_cutoff(int(n), utilrank_threshold))
        mask = rows["rank"].notna() & (rows["rank"] <= cut)
    else:
        mask = rows["selected"].astype(bool)
    return rows.loc[mask, ["query_id", "doc_id"]].reset_index(drop=True)


def split_empty(
    positives: pd.DataFrame, query_ids: pd.Series, policy: str = "drop"
) -> tuple[pd.DataFrame, list[str]]:
    """Apply the no-positive policy; return (positives, ids of queries without a positive).

    ``drop`` removes such queries from training (their pool passages are not used as
    negatives either); ``keep`` leaves them for losses that skip rows without positives;
    ``human`` gives them their human positive(s) instead (the caller adds those).
    """
    if policy not in EMPTY_POLICIES:
        raise ValueError(f"unknown empty-positive policy {policy!r}; expected {EMPTY_POLICIES}")
    empty = sorted(set(query_ids.astype(str)) - set(positives["query_id"].astype(str)))
    return positives, empty
