"""File-level entry point of an evaluation job (what rules ``evaluate_run`` and
``evaluate_hybrid`` call): several (run, target) evaluations, one after the other.

One job scores one run on every target, or every run on the Hybrid Test's target, rather than
one job per (run, target): at MS MARCO scale (50 runs x 28 targets) Snakemake's per-job
planning, repeated on every rerun, cost more than the evaluations. Each item names its own
files (``eval_item`` in workflow/rules/common.smk):

- ``run_file``, ``qrels``, ``measures``: ir_measures names against the target's qrels (the
  Hybrid Test's golden qrels for its target); ``Acc@k`` (DPR top-k answer accuracy) against
  the gold ``answers`` (``answers_format``; None: the dataset's ingested answers), with the
  ``queries`` and the ``corpus`` passages' text;
- or ``subsets``: a benchmark target (CQADupStack) as the mean of its subsets' figures, read
  back from the files this job wrote for them before (items come subsets first).

Every item's files are written atomically as soon as it is scored, so a failed item names its
(run, dataset, split) and leaves no half-written file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.evaluation import accuracy_cutoff, aggregate, answer_accuracy, average_subsets
from utilann.evaluation import evaluate_run as score_run
from utilann.io import read_table, write_table
from utilann.qa import load_answers
from utilann.rag.prompts import load_passages

log = logging.getLogger(__name__)

Item = Mapping[str, Any]


class EvaluationError(RuntimeError):
    """One evaluation of the job failed; the message names its run and target."""


def run_evaluations(items: Sequence[Item]) -> None:
    """Score every item in order and write its per-query and metrics files."""
    tables: dict[str, pd.DataFrame] = {}  # qrels tables by path: the Hybrid job reads one
    for item in items:
        name = f"{item['run']} on {item['dataset']}/{item['split']}"
        try:
            if "subsets" in item:
                per_query, metrics, meta = _average(item)
            else:
                per_query, metrics, meta = _score(item, tables)
        except Exception as exc:
            raise EvaluationError(f"evaluation of {name} failed: {exc}") from exc
        write_table(per_query, item["perquery"], schemas.PER_QUERY, meta)
        write_table(metrics, item["metrics"], schemas.METRICS, meta)
        for row in metrics.itertuples(index=False):
            log.info("%s %s/%s %s = %.4f", row.run, row.dataset, row.split, row.measure, row.value)


def _score(
    item: Item, tables: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    if item["qrels"] not in tables:
        tables[item["qrels"]] = read_table(item["qrels"])
    qrels = split_qrels(tables[item["qrels"]], item["split"])
    run = read_table(item["run_file"])
    measures = list(item["measures"])
    cutoffs = [k for k in map(accuracy_cutoff, measures) if k is not None]
    per_query = score_run(run, qrels, [m for m in measures if accuracy_cutoff(m) is None])
    if cutoffs:
        accuracy = _answer_accuracy(item, run, qrels, cutoffs)
        per_query = pd.concat([per_query, accuracy], ignore_index=True)
    meta = {"run": item["run"], "dataset": item["dataset"], "split": item["split"]}
    metrics = aggregate(per_query, item["run"], item["dataset"], item["split"])
    return per_query, metrics, {**meta, "measures": measures}


def _answer_accuracy(
    item: Item, run: pd.DataFrame, qrels: pd.DataFrame, cutoffs: list[int]
) -> pd.DataFrame:
    """Acc@k of the judged queries that have a gold answer."""
    queries = read_table(item["queries"])
    answers = (
        load_answers(item["answers"], item["answers_format"], queries)
        if item["answers_format"]
        else read_table(item["answers"])
    )
    judged = set(qrels["query_id"].astype(str))
    golds = {
        str(q): list(a)
        for q, a in zip(answers["query_id"], answers["answers"])
        if str(q) in judged and len(a)
    }
    log.info("Acc@%s over %d queries with gold answers", cutoffs, len(golds))
    top = run[run["query_id"].astype(str).isin(golds) & (run["rank"] <= max(cutoffs))]
    passages = load_passages(item["corpus"], top["doc_id"], titles=False)
    return answer_accuracy(run, golds, passages, cutoffs)


def _average(item: Item) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    parts = {
        dataset: (read_table(files["perquery"]), read_table(files["metrics"]))
        for dataset, files in item["subsets"].items()
    }
    per_query, metrics = average_subsets(parts, item["run"], item["dataset"], item["split"])
    log.info("%s/%s: the mean of %d subsets", item["dataset"], item["split"], len(parts))
    meta = {"run": item["run"], "dataset": item["dataset"], "split": item["split"]}
    return per_query, metrics, {**meta, "subsets": sorted(parts)}
