"""From label tables to the positives a retriever is trained on.

Kept apart from annotation and training because both sides need the same rule: the annotation
report measures precision/recall of exactly the positives the trainer will see. How a
strategy's rows become positives is declared by its step in the registry
(:mod:`utilann.annotate.steps`): selected passages, or the top k % of a ranking.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from utilann.annotate.steps import strategy as strategy_step


def derive_positives(
    labels: pd.DataFrame, strategy: str, threshold: float | None = None
) -> pd.DataFrame:
    """Return the (query_id, doc_id) positives of ``strategy`` from a LABELS table.

    ``threshold`` (k %) is required by strategies whose labels are cut by one (UtilRank) and
    ignored by the others.
    """
    rule = strategy_step(strategy).labels
    rows = labels[labels["strategy"] == strategy]
    mask = rule.positives(rows, threshold if rule.uses_threshold else None)
    return rows.loc[mask, ["query_id", "doc_id"]].reset_index(drop=True)


def queries_without_positive(positives: pd.DataFrame, query_ids: Iterable[str]) -> list[str]:
    """Sorted ids among ``query_ids`` that have no row in ``positives`` (query_id, doc_id).

    What happens to them is the training set's ``empty_policy``
    (:func:`utilann.train.data.build_trainset`); the annotation report counts them.
    """
    return sorted(set(map(str, query_ids)) - set(positives["query_id"].astype(str)))
