"""Reading the shard label files of one annotation run back as one table.

The merged ``annotation/labels.parquet`` keeps every annotated query, including those left
without a positive: what happens to them is the training stage's ``empty_policy`` (drop by
default), and the annotation report counts them per strategy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from utilann.annotate.steps import uses_threshold
from utilann.io import read_metadata, read_table
from utilann.labels import derive_positives, queries_without_positive

#: metadata that must agree between shards for their labels to mean the same thing
IDENTITY_KEYS = (
    "model",
    "backend",
    "dtype",
    "sampling",
    "prompts",
    "strategies",
    "window_size",
    "position_policy",
    "seed",
    "passage_max_words",
    "decoding",
    "code_version",
)
#: any threshold gives the same emptiness: the cutoff keeps at least one ranked passage
_ANY_THRESHOLD = 100.0


def read_shards(paths: Sequence[str | os.PathLike[str]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Concatenate shard label files; return them with the shards' shared metadata."""
    if not paths:
        raise ValueError("no label shards to merge")
    metas = [read_metadata(p) for p in paths]
    for path, meta in zip(paths, metas, strict=True):
        differs = [k for k in IDENTITY_KEYS if meta.get(k) != metas[0].get(k)]
        if differs:
            raise ValueError(f"{path} was annotated with different {differs} than {paths[0]}")
    labels = pd.concat([read_table(p) for p in paths], ignore_index=True)
    labels["rank"] = labels["rank"].astype("Int32")
    return labels, {
        k: metas[0].get(k)
        for k in IDENTITY_KEYS + ("model_path", "model_revision", "engine_version")
    }


def empty_queries(labels: pd.DataFrame, strategy: str) -> list[str]:
    """Queries annotated for ``strategy`` that have no positive under it."""
    rows = labels[labels["strategy"] == strategy]
    threshold = _ANY_THRESHOLD if uses_threshold(strategy) else None
    return queries_without_positive(derive_positives(rows, strategy, threshold), rows["query_id"])
