"""Retrieval evaluation with ir_measures: per-query values and aggregates of one run.

The metric core knows nothing about datasets: measures are data (ir_measures strings such as
``nDCG@10``, ``RR@10``, ``R(rel=2)@1000``). Queries that have judgements but no retrieved
document count as 0, so that a run cannot look better by retrieving nothing for hard queries
(trec_eval and pytrec_eval silently skip them).

One measure family is not about qrels: ``Acc@k``, the top-k retrieval accuracy of DPR (paper
App. C, Table 9: "Top20" ... "Top100" on NQ): 1 when one of the top k passages contains a gold
answer, matched as DPR and pyserini's ``evaluate_dpr_retrieval`` match it (their
``has_answers``: NFD-normalised, uncased token sequence of the answer inside the passage text,
title left out as in DPR's own validation).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence

import ir_measures
import pandas as pd

from . import schemas

log = logging.getLogger(__name__)

_ACCURACY = re.compile(r"^Acc@([1-9][0-9]*)$")


def accuracy_cutoff(name: str) -> int | None:
    """k of an ``Acc@k`` measure, None for any other name."""
    match = _ACCURACY.match(name)
    return int(match.group(1)) if match else None


def uses_answer_accuracy(names: Iterable[str]) -> bool:
    """Whether ``names`` include an ``Acc@k`` measure (it needs gold answers and passages)."""
    return any(accuracy_cutoff(n) is not None for n in names)


def parse_measures(names: list[str]) -> list[ir_measures.Measure]:
    """Parse ir_measures names (``Acc@k`` excluded), with an error that names the bad one."""
    parsed = []
    for name in names:
        if accuracy_cutoff(name) is not None:
            continue
        try:
            parsed.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError) as err:
            raise ValueError(f"unknown evaluation measure {name!r} ({err})") from None
    return parsed


def judged_queries(qrels: pd.DataFrame) -> list[str]:
    """Queries with at least one positive judgement: the ones a run is evaluated on."""
    return sorted(qrels.loc[qrels["relevance"] > 0, "query_id"].astype(str).unique())


def max_grade_warning(qrels: pd.DataFrame, measures: Sequence[str]) -> str | None:
    """A warning when a measure asks for a grade the qrels never reach (``R(rel=2)@1000`` on
    binary labels is 0 for every query), else None."""
    top = int(qrels["relevance"].max()) if len(qrels) else 0
    high = [m for m in parse_measures(list(measures)) if int(m.params.get("rel") or 1) > top]
    if not high:
        return None
    return (
        f"measure(s) {[str(m) for m in high]} need relevance above the highest grade of these "
        f"qrels ({top}): every value is 0; use them on graded qrels only (evaluation.targets[]."
        "extra_measures)"
    )


def evaluate_run(run: pd.DataFrame, qrels: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """Per-query values (query_id, measure, value) over every judged query of ``qrels``
    (ir_measures names; ``Acc@k`` needs :func:`answer_accuracy` instead)."""
    parsed = parse_measures(measures)
    if not parsed:
        return pd.DataFrame(columns=schemas.PER_QUERY.names)
    warning = max_grade_warning(qrels, measures)
    if warning:
        log.warning(warning)
    qids = judged_queries(qrels)
    qrels = qrels[qrels["query_id"].isin(qids)][["query_id", "doc_id", "relevance"]]
    run = run[run["query_id"].isin(qids)][["query_id", "doc_id", "score"]]
    values = {
        (m.query_id, str(m.measure)): float(m.value)
        for m in ir_measures.iter_calc(parsed, qrels, run)
    }
    rows = [(q, str(m), values.get((q, str(m)), 0.0)) for q in qids for m in parsed]
    return pd.DataFrame(rows, columns=schemas.PER_QUERY.names)


def aggregate(per_query: pd.DataFrame, run: str, dataset: str, split: str) -> pd.DataFrame:
    """Mean of each measure over queries, as rows of the experiment's metrics table."""
    means = per_query.groupby("measure", sort=True)["value"].mean().reset_index()
    means.insert(0, "split", split)
    means.insert(0, "dataset", dataset)
    means.insert(0, "run", run)
    return means[schemas.METRICS.names]


def answer_accuracy(
    run: pd.DataFrame,
    answers: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    cutoffs: Sequence[int],
) -> pd.DataFrame:
    """Per-query ``Acc@k`` (PER_QUERY rows): 1 when a top-k passage holds a gold answer.

    Args:
        run: RUN table; its ``rank`` orders each query's list.
        answers: gold answers of the evaluated queries (queries without one are not scored).
        passages: passage text by doc id (at least every doc in the top max(k)).
        cutoffs: the k values.
    """
    from pyserini.eval.evaluate_dpr_retrieval import SimpleTokenizer, has_answers

    tokenizer = SimpleTokenizer()
    depth = max(cutoffs)
    top = run[run["rank"] <= depth].sort_values(["query_id", "rank"], kind="stable")
    ranked = top.groupby("query_id")["doc_id"].agg(list).to_dict()
    rows = []
    for qid in sorted(answers):
        golds = list(answers[qid])
        hits = [has_answers(passages[d], golds, tokenizer, False) for d in ranked.get(qid, [])]
        first = next((i for i, hit in enumerate(hits) if hit), None)
        for k in cutoffs:
            rows.append((qid, f"Acc@{k}", float(first is not None and first < k)))
    return pd.DataFrame(rows, columns=schemas.PER_QUERY.names)


def average_subsets(
    parts: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], run: str, dataset: str, split: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A benchmark's (per-query, metrics) from its subsets' ``{name: (per-query, metrics)}``.

    The figure of each measure is the unweighted mean over the subsets that have it (as BEIR
    averages CQADupStack's forums); a measure missing from some subset is an error, since the
    mean would then cover different forums per measure. Per-query ids become ``name/query``.
    """
    if not parts:
        raise ValueError(f"{dataset}/{split}: no subset results to average")
    measures = {name: set(metrics["measure"]) for name, (_, metrics) in parts.items()}
    common = set.intersection(*measures.values())
    if any(m != common for m in measures.values()):
        raise ValueError(f"{dataset}/{split}: subsets have different measures: {measures}")
    per_query = pd.concat(
        [
            pq.assign(query_id=name + "/" + pq["query_id"].astype(str))
            for name, (pq, _) in parts.items()
        ],
        ignore_index=True,
    )
    stacked = pd.concat([m for _, m in parts.values()], ignore_index=True)
    means = stacked.groupby("measure", sort=True)["value"].mean().reset_index()
    means.insert(0, "split", split)
    means.insert(0, "dataset", dataset)
    means.insert(0, "run", run)
    return per_query[schemas.PER_QUERY.names], means[schemas.METRICS.names]
