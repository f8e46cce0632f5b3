"""Retrieval evaluation with ir_measures: per-query values and aggregates of one run.

The metric core knows nothing about datasets: measures are data (ir_measures strings such as
``nDCG@10``, ``RR@10``, ``R(rel=2)@1000``). Queries that have judgements but no retrieved
document count as 0, so that a run cannot look better by retrieving nothing for hard queries
(trec_eval and pytrec_eval silently skip them).
"""

from __future__ import annotations

import ir_measures
import pandas as pd

from . import schemas


def parse_measures(names: list[str]) -> list[ir_measures.Measure]:
    """Parse ir_measures names, with an error that names the bad one."""
    parsed = []
    for name in names:
        try:
            parsed.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError) as err:
            raise ValueError(f"unknown evaluation measure {name!r} ({err})") from None
    return parsed


def judged_queries(qrels: pd.DataFrame) -> list[str]:
    """Queries with at least one positive judgement: the ones a run is evaluated on."""
    return sorted(qrels.loc[qrels["relevance"] > 0, "query_id"].astype(str).unique())


def evaluate_run(run: pd.DataFrame, qrels: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """Per-query values (query_id, measure, value) over every judged query of ``qrels``."""
    parsed = parse_measures(measures)
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
