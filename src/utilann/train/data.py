"""Training sets: which pool passages are positives and negatives for each training query.

A training set is built once per run from the candidate pools (POOLS) and, for LLM label
sources, the annotation labels (LABELS) or, for the REPLUG baseline, the LM's answer
likelihoods (REPLUG_SCORES), and written as a TRAINSET table. Everything that decides
*labels* happens here (label source, UtilRank cut, REPLUG's utility distribution, handling of
the human positive, Positive Union, the curriculum's x % of queries, queries left without a
positive); everything that decides *which passages a batch sees* happens at training time in
:mod:`utilann.train.sampling`, because it changes every epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from utilann.audit.negatives import judged_useful
from utilann.labels import derive_positives, queries_without_positive
from utilann.passages import format_passage, title_share
from utilann.replug import utility_distribution
from utilann.train.settings import TrainsetSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainQuery:
    """One training query with its positive and negative passage ids (pool order), and the
    teacher's utility of its passages where the training set has one (REPLUG)."""

    query_id: str
    text: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    utility: Mapping[str, float] = field(default_factory=dict)


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


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(query_id, doc_id) pairs of ``df`` in row order."""
    return list(zip(df["query_id"].astype(str), df["doc_id"].astype(str), strict=True))


def build_trainset(
    pools: pd.DataFrame,
    labels: pd.DataFrame | None,
    settings: TrainsetSettings,
    replug: pd.DataFrame | None = None,
    selected: Iterable[str] | None = None,
    audit: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """Label each pool passage positive or negative; return (TRAINSET rows, statistics).

    Negatives are the query's pool passages that are not positives: under the default
    ``random`` policy a human positive the LLM did not select is a negative (paper App. B.1).
    For label source ``replug``, ``replug`` is the REPLUG_SCORES table: every scored passage
    gets its utility ``U`` (:func:`utilann.replug.utility_distribution`) and the passage(s) of
    highest ``U`` are the positives; queries without a gold answer have no score, hence no
    positive (``empty_policy`` decides). ``selected`` are the queries to train on when they
    were chosen beforehand (the human share of :mod:`utilann.selection`); otherwise the seeded
    ``query_ratio`` sample. ``audit`` is the false-negative audit's AUDIT_NEGATIVES table
    when ``training.negatives.drop_judged_useful`` is on: the negatives it judged useful are
    removed, in the audited queries only (:func:`drop_judged_useful`).
    """
    pools = pools.astype({"query_id": str, "doc_id": str})
    all_queries = sorted(pools["query_id"].unique())
    queries = (
        sample_fraction(all_queries, settings.query_ratio, settings.seed)
        if selected is None
        else set(map(str, selected)) & set(all_queries)
    )
    human = set(_pairs(pools[pools["is_human_positive"]]))
    utility: dict[tuple[str, str], float] = {}

    if settings.needs_replug:
        if replug is None:
            raise ValueError("label_source 'replug' needs the REPLUG answer likelihoods table")
        dist = utility_distribution(
            replug, float(settings.replug_temperature or 1.0), str(settings.replug_score)
        )
        utility = dict(zip(_pairs(dist), dist["utility"], strict=True))
        outside = set(utility) - set(_pairs(pools))
        if outside:
            raise ValueError(
                f"{len(outside)} REPLUG scores are for passages outside the pools (e.g. "
                f"{sorted(outside)[:3]}): the scores were made from other pools"
            )
        positives = set(
            _pairs(dist[dist["utility"] == dist.groupby("query_id")["utility"].transform("max")])
        )
    elif settings.needs_labels:
        if labels is None:
            raise ValueError(f"label_source {settings.label_source!r} needs the LLM labels table")
        llm = set(_pairs(derive_positives(labels, settings.label_source, settings.threshold)))
        outside = llm - set(_pairs(pools))
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
    empty = queries_without_positive(pos_df, queries)
    without = set(empty)
    n_selected = len(queries)
    dropped: set[str] = set()
    fallback: set[str] = set()
    if settings.empty_policy == "human":
        given = {(q, d) for q, d in human if q in without}
        positives |= given
        fallback = {q for q, _ in given}
    if settings.empty_policy != "keep":
        dropped = without - fallback  # `human`: also no human positive in the pool
        queries -= dropped
    if not queries or (len(empty) == n_selected and not fallback):
        # Fail here, naming the cause, rather than train on nothing (or on zero-loss rows).
        raise ValueError(
            f"no training query has a positive: all {n_selected} selected queries are without "
            f"one under label_source {settings.label_source!r}. For LLM labels this means the "
            "annotator selected nothing or its replies did not parse: see the annotation "
            "report (parse failures per step), try another model or prompt version, or let "
            "such queries fall back to their human positive (empty_policy: human)"
        )
    if fallback:
        log.warning(
            "%d of %d queries had no %s positive and fell back to their human positive",
            len(fallback),
            n_selected,
            settings.label_source,
        )

    rows = pools[pools["query_id"].isin(queries)].sort_values(["query_id", "position"])
    pairs = _pairs(rows)
    rows = rows.assign(
        positive=[pair in positives for pair in pairs],
        is_human_positive=rows["is_human_positive"].astype(bool),
        utility=pd.array([utility.get(pair) for pair in pairs], dtype="Float64"),
    )
    dropped_negatives = {}
    if audit is not None:
        rows, dropped_negatives = drop_judged_useful(rows, audit)
    n_pos = rows.groupby("query_id")["positive"].sum()
    kept_human = human & set(_pairs(rows))
    stats: dict[str, float | int] = {
        "pool_queries": len(all_queries),
        "selected_queries": n_selected,
        "queries": int(rows["query_id"].nunique()),
        "queries_without_positive": len(empty),
        "queries_human_fallback": len(fallback),
        "queries_dropped": len(dropped),
        "union_queries": len(union_queries),
        "positives": int(rows["positive"].sum()),
        "negatives": int((~rows["positive"]).sum()),
        "mean_positives": float(n_pos.mean()) if len(n_pos) else 0.0,
        "human_positive_recall": (
            float(np.mean([pair in positives for pair in kept_human])) if kept_human else 0.0
        ),
    }
    stats.update(dropped_negatives)
    if settings.needs_replug:
        scored = rows["utility"].notna()
        stats["replug_scored_queries"] = int(rows.loc[scored, "query_id"].nunique())
        top = rows[scored].groupby("query_id")["utility"].max()
        stats["replug_mean_top_utility"] = float(top.mean()) if len(top) else 0.0
    log.info("training set: %s", stats)
    return rows.reset_index(drop=True), stats


def drop_judged_useful(
    rows: pd.DataFrame, audit: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Remove the negatives of TRAINSET ``rows`` that the false-negative audit judged useful.

    Only the audited queries can lose negatives (a query outside the audit's sample keeps all
    of them); positives are never removed. Returns the kept rows and the counts for the
    training set's metadata: negatives dropped, queries that lost some, training queries the
    audit covered and did not cover.
    """
    useful, audited = judged_useful(audit)
    pairs = _pairs(rows)
    drop = np.array([pair in useful for pair in pairs], dtype=bool) & ~rows["positive"].to_numpy(
        bool
    )
    training = set(rows["query_id"])
    counts = {
        "negatives_dropped_judged_useful": int(drop.sum()),
        "queries_with_dropped_negatives": int(rows.loc[drop, "query_id"].nunique()),
        "queries_audited": len(training & audited),
        "queries_not_audited": len(training - audited),
    }
    log.info(
        "dropped %d negatives judged useful by the false-negative audit (%d queries); %d of "
        "%d training queries were audited, the others keep all their negatives",
        counts["negatives_dropped_judged_useful"],
        counts["queries_with_dropped_negatives"],
        counts["queries_audited"],
        len(training),
    )
    return rows[~drop].reset_index(drop=True), counts


def load_training_queries(
    trainset: pd.DataFrame, with_title: bool = True, separator: str = " "
) -> tuple[list[TrainQuery], dict[str, str]]:
    """Group TRAINSET rows per query; return (queries sorted by id, doc_id -> passage string).

    Passages are formatted with the run's passage format (``with_title``, ``separator``:
    :func:`utilann.passages.format_passage`), the same one its corpus encoding uses; the
    share of titled passages is logged, for comparison with the corpora it will search.
    """
    unique = trainset.drop_duplicates("doc_id")
    passages = {
        str(d): format_passage(t, x, with_title=with_title, separator=separator)
        for d, t, x in unique[["doc_id", "title", "text"]].itertuples(index=False)
    }
    log.info(
        "%d training passages, %.0f %% with a title; passage format: %s",
        len(passages),
        100 * title_share(list(unique["title"])),
        f"title{separator!r}text" if with_title else "text only",
    )
    has_utility = "utility" in trainset.columns and bool(trainset["utility"].notna().any())
    queries = []
    for qid, rows in trainset.sort_values(["query_id"], kind="stable").groupby(
        "query_id", sort=True
    ):
        flags = rows["positive"].to_numpy(bool)
        ids = rows["doc_id"].astype(str).to_numpy()
        utility = {}
        if has_utility:
            known = rows["utility"].notna().to_numpy()
            utility = dict(zip(ids[known], rows["utility"][known].astype(float), strict=True))
        queries.append(
            TrainQuery(
                query_id=str(qid),
                text=str(rows["query"].iloc[0]),
                positives=tuple(ids[flags]),
                negatives=tuple(ids[~flags]),
                utility=utility,
            )
        )
    return queries, passages
