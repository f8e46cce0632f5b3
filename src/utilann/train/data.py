"""Training sets: which pool passages are positives and negatives for each training query.

A training set is built once per run from the candidate pools (POOLS) and, for LLM label
sources, the annotation labels (LABELS), and written as a TRAINSET table. Everything that
decides *labels* happens here (label source, UtilRank cut, handling of the human positive,
Positive Union, the curriculum's x % of queries, queries left without a positive); everything
that decides *which passages a batch sees* happens at training time in
:mod:`utilann.train.sampling`, because it changes every epoch.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from utilann.labels import derive_positives, split_empty
from utilann.train.model import format_passage

log = logging.getLogger(__name__)

LABEL_SOURCES = ("human", "relsel", "utilsel", "utilrank")
HUMAN_POSITIVE_POLICIES = ("random", "exclusion", "inclusion")


@dataclass(frozen=True)
class TrainsetSettings:
    """Label-side settings of one run (the ``build_trainset`` rule's params).

    Attributes:
        label_source: ``human`` (the pools' human positives) or an LLM strategy.
        utilrank_threshold: k % of the RelSel list that UtilRank keeps (used for utilrank only).
        human_positive: ``random`` (the human passage is a positive only if the LLM chose it),
            ``exclusion`` (removed from the query's training passages), ``inclusion`` (always a
            positive); digest 4.6.
        union_ratio: Positive Union baseline: for this seeded fraction of queries the positives
            are LLM + human positives (digest 4.7).
        query_ratio: seeded fraction of the pool's queries to train on (a curriculum stage 2 on
            20 % of the human labels uses 0.2).
        empty_policy: ``drop`` queries that end with no positive (counted), or ``keep`` them.
        seed: seed of the query fractions; the same seed picks the same queries in every run,
            so "the 20 % human-labelled queries" are one set across CL and Positive Union.
    """

    label_source: str = "human"
    utilrank_threshold: float = 10.0
    human_positive: str = "random"
    union_ratio: float = 0.0
    query_ratio: float = 1.0
    empty_policy: str = "drop"
    seed: int = 42

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}: {self.label_source!r}")
        if self.human_positive not in HUMAN_POSITIVE_POLICIES:
            raise ValueError(
                f"human_positive must be one of {HUMAN_POSITIVE_POLICIES}: {self.human_positive!r}"
            )
        if self.label_source == "human" and (
            self.human_positive != "random" or self.union_ratio > 0
        ):
            raise ValueError(
                "human_positive and union_ratio only apply to LLM label sources; "
                "with label_source 'human' keep human_positive 'random' and union_ratio 0"
            )
        if self.union_ratio > 0 and self.human_positive != "random":
            raise ValueError("Positive Union (union_ratio > 0) needs human_positive 'random'")
        if not 0 < self.query_ratio <= 1 or not 0 <= self.union_ratio <= 1:
            raise ValueError("query_ratio must be in (0, 1] and union_ratio in [0, 1]")

    @property
    def needs_labels(self) -> bool:
        """Whether the LLM labels table is an input of this training set."""
        return self.label_source != "human"


@dataclass(frozen=True)
class TrainQuery:
    """One training query with its positive and negative passage ids (pool order)."""

    query_id: str
    text: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


def sample_fraction(ids: Iterable[str], ratio: float, seed: int) -> set[str]:
    """A seeded ``ratio`` share of ``ids`` (at least one), independent of their input order."""
    pool = sorted(set(ids))
    if ratio >= 1:
        return set(pool)
    if ratio <= 0 or not pool:
        return set()
    n = max(1, round(ratio * len(pool)))
    picked = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return {pool[i] for i in picked}


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's ``hash`` of str is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["query_id"].astype(str), df["doc_id"].astype(str), strict=True))


def build_trainset(
    pools: pd.DataFrame, labels: pd.DataFrame | None, settings: TrainsetSettings
) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """Label each pool passage positive or negative; return (TRAINSET rows, statistics).

    Negatives are the query's pool passages that are not positives: under the default
    ``random`` policy a human positive the LLM did not select is a negative (digest 3.6).
    """
    pools = pools.astype({"query_id": str, "doc_id": str})
    all_queries = sorted(pools["query_id"].unique())
    queries = sample_fraction(all_queries, settings.query_ratio, settings.seed)
    human = _pairs(pools[pools["is_human_positive"]])

    if settings.needs_labels:
        if labels is None:
            raise ValueError(f"label_source {settings.label_source!r} needs the LLM labels table")
        threshold = settings.utilrank_threshold if settings.label_source == "utilrank" else None
        llm = _pairs(derive_positives(labels, settings.label_source, threshold))
        outside = llm - _pairs(pools)
        if outside:
            log.warning("%d LLM positives are not in the pools and are ignored", len(outside))
        positives = llm - outside
    else:
        positives = set(human)

    if settings.human_positive == "inclusion":
        positives |= human
    elif settings.human_positive == "exclusion":
        positives -= human
        pools = pools[~pools["is_human_positive"]]
    union_queries = sample_fraction(all_queries, settings.union_ratio, settings.seed)
    positives |= {(q, d) for q, d in human if q in union_queries}

    positives = {(q, d) for q, d in positives if q in queries}
    pos_df = pd.DataFrame(sorted(positives), columns=["query_id", "doc_id"])
    _, empty = split_empty(pos_df, pd.Series(sorted(queries)), settings.empty_policy)
    if settings.empty_policy == "drop":
        queries -= set(empty)

    rows = pools[pools["query_id"].isin(queries)].sort_values(["query_id", "position"])
    rows = rows.assign(
        positive=[pair in positives for pair in _pairs_in_order(rows)],
        is_human_positive=rows["is_human_positive"].astype(bool),
    )
    n_pos = rows.groupby("query_id")["positive"].sum()
    kept_human = human & set(_pairs_in_order(rows))
    stats: dict[str, float | int] = {
        "pool_queries": len(all_queries),
        "selected_queries": len(sample_fraction(all_queries, settings.query_ratio, settings.seed)),
        "queries": int(rows["query_id"].nunique()),
        "queries_without_positive": len(empty),
        "queries_dropped": len(empty) if settings.empty_policy == "drop" else 0,
        "union_queries": len(union_queries),
        "positives": int(rows["positive"].sum()),
        "negatives": int((~rows["positive"]).sum()),
        "mean_positives": float(n_pos.mean()) if len(n_pos) else 0.0,
        "human_positive_recall": (
            float(np.mean([pair in positives for pair in kept_human])) if kept_human else 0.0
        ),
    }
    log.info("training set: %s", stats)
    return rows.reset_index(drop=True), stats


def _pairs_in_order(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(df["query_id"].astype(str), df["doc_id"].astype(str), strict=True))


def load_training_queries(trainset: pd.DataFrame) -> tuple[list[TrainQuery], dict[str, str]]:
    """Group TRAINSET rows per query; return (queries sorted by id, doc_id -> passage string)."""
    passages = {
        str(d): format_passage(t, x)
        for d, t, x in trainset[["doc_id", "title", "text"]].itertuples(index=False)
    }
    queries = []
    for qid, rows in trainset.sort_values(["query_id"], kind="stable").groupby(
        "query_id", sort=True
    ):
        flags = rows["positive"].to_numpy(bool)
        ids = rows["doc_id"].astype(str).to_numpy()
        queries.append(
            TrainQuery(
                query_id=str(qid),
                text=str(rows["query"].iloc[0]),
                positives=tuple(ids[flags]),
                negatives=tuple(ids[~flags]),
            )
        )
    return queries, passages
