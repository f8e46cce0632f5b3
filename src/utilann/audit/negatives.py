"""The false-negative audit: how many BM25 hard negatives the judge calls useful.

Training treats every pool passage that is not a positive as a negative, and the pools'
negatives are BM25's top passages that no human judged relevant (paper 3.1, App. B.1). MS
MARCO's sparse qrels leave useful passages among them; training pushes them away from the
query. The audit measures how many: for a seeded sample of training queries
(``audit.false_negatives.sample``, a count or ``all``) the UtilSel step of the registry
re-reads each query's whole pool (human positives included, as a check that the judge finds
them), in windows of ``window_size`` passages, shuffled with ``seed`` so that no passage has a
fixed slot, with the cascade's pseudo-answer as reference answer where there is one
(:mod:`utilann.audit.answers`). Its output is one AUDIT_NEGATIVES row per judged passage;
:func:`summary` gives per dataset the share of hard negatives judged useful (the
false-negative rate, with its Wilson interval) and the share of human positives found.

A passage whose call did not parse has no judgement (``parse_status`` ``failed``): it is
counted, and left out of both rates. ``training.negatives.drop_judged_useful`` removes the
passages judged useful from the negatives of every training set (:func:`judged_useful`):
only where the audit judged, so a query outside the sample keeps all its negatives (the
training-set metadata counts both; ``sample: all`` audits every training query).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from utilann import schemas
from utilann.annotate.cascade import StepStats, group_pools
from utilann.annotate.judge import judge_windows
from utilann.annotate.steps import get_step
from utilann.annotate.windows import relsel_windows
from utilann.audit.answers import CASCADE, reference_answers
from utilann.audit.stats import wilson
from utilann.llm.batch import CachedGenerator
from utilann.llm.templates import PromptTemplate

ALL = "all"
JUDGE_STEP = "utilsel"
FAILED = "failed"


def sample_queries(query_ids: Iterable[str], sample: int | str, seed: int) -> list[str]:
    """A seeded sample of ``sample`` distinct query ids (``all``: every one), sorted.

    Independent of the input order (the ids are sorted before drawing), so sharding or
    re-ordering the pools does not change the audited queries.
    """
    pool = sorted(set(map(str, query_ids)))
    if sample == ALL:
        return pool
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
        raise ValueError(f"audit sample must be a positive count or {ALL!r}, got {sample!r}")
    if sample >= len(pool):
        return pool
    picked = np.random.default_rng(seed).choice(len(pool), size=sample, replace=False)
    return sorted(pool[i] for i in picked)


@dataclass
class Audit:
    """AUDIT_NEGATIVES rows, the RAW rows of every call, and per-step call statistics."""

    table: pd.DataFrame
    raw: pd.DataFrame
    stats: dict[str, StepStats]


def audit_negatives(
    pools: pd.DataFrame,
    query_ids: Iterable[str],
    known_answers: Mapping[str, str],
    templates: Mapping[str, PromptTemplate],
    generator: CachedGenerator,
    sampling: Callable[[str, int], Mapping[str, Any]],
    window_size: int,
    seed: int,
    passage_max_words: int,
) -> Audit:
    """Judge the pools of ``query_ids`` with UtilSel (module docstring).

    ``templates`` holds the ``answer`` and ``utilsel`` templates; ``sampling(step, n)`` is a
    step's decoding over ``n`` passages.
    """
    wanted = set(map(str, query_ids))
    pools = pools.astype({"query_id": str, "doc_id": str})
    queries = group_pools(pools[pools["query_id"].isin(wanted)], passage_max_words)
    missing = wanted - {q.query_id for q in queries}
    if missing:
        raise ValueError(
            f"{len(missing)} audited queries have no pool (e.g. {sorted(missing)[:3]})"
        )
    refs = reference_answers(
        queries, known_answers, templates["answer"], generator, lambda n: sampling("answer", n)
    )
    windows = {
        q.query_id: relsel_windows(q.is_human, window_size, "shuffled", seed, q.query_id)
        for q in queries
    }
    judged = judge_windows(
        get_step(JUDGE_STEP),
        templates[JUDGE_STEP],
        queries,
        windows,
        refs.answers,
        generator,
        lambda n: sampling(JUDGE_STEP, n),
        desc="false-negative audit",
    )
    status = {
        (str(q), str(d)): s
        for q, docs, s in judged.raw[["query_id", "doc_ids", "parse_status"]].itertuples(
            index=False
        )
        for d in docs
    }
    rows = judged.labels
    pairs = zip(rows["query_id"], rows["doc_id"], strict=True)
    table = pd.DataFrame(
        {
            "query_id": rows["query_id"],
            "doc_id": rows["doc_id"],
            "position": rows["position"],
            "is_human_positive": rows["is_human_positive"].astype(bool),
            "useful": rows["selected"].astype(bool),
            "parse_status": [status[p] for p in pairs],
            "answer_source": rows["query_id"].map(refs.sources),
        },
        columns=schemas.AUDIT_NEGATIVES.names,
    )
    raw = pd.concat([refs.raw, judged.raw], ignore_index=True)
    return Audit(table, raw, {"answer": refs.stats, JUDGE_STEP: judged.stats})


def summary(table: pd.DataFrame, dataset: str, split: str) -> pd.DataFrame:
    """One AUDIT_SUMMARY row: the false-negative rate and the human positives' recall.

    Passages whose call failed to parse are counted (``unjudged``) and left out of both rates.
    """
    judged = table[table["parse_status"] != FAILED]
    negatives = judged[~judged["is_human_positive"]]
    humans = judged[judged["is_human_positive"]]
    fn = wilson(int(negatives["useful"].sum()), len(negatives))
    found = wilson(int(humans["useful"].sum()), len(humans))
    row = {
        "dataset": dataset,
        "split": split,
        "queries": int(table["query_id"].nunique()),
        "negatives": fn.n,
        "judged_useful": fn.k,
        "fn_rate": fn.rate,
        "fn_low": fn.low,
        "fn_high": fn.high,
        "human_positives": found.n,
        "human_found": found.rate,
        "unjudged": int(len(table) - len(judged)),
        "cascade_answers": int(
            table.drop_duplicates("query_id")["answer_source"].eq(CASCADE).sum()
        ),
    }
    return pd.DataFrame([row], columns=schemas.AUDIT_SUMMARY.names)


def judged_useful(table: pd.DataFrame) -> tuple[set[tuple[str, str]], set[str]]:
    """``(passages judged useful, audited queries)`` of an AUDIT_NEGATIVES table: what
    ``training.negatives.drop_judged_useful`` removes from the negatives, and where."""
    ok = table[(table["parse_status"] != FAILED) & table["useful"].astype(bool)]
    pairs = set(zip(ok["query_id"].astype(str), ok["doc_id"].astype(str), strict=True))
    return pairs, set(table["query_id"].astype(str))
