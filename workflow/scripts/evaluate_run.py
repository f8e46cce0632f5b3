"""Evaluate one run on one evaluation target: per-query values and aggregates.

ir_measures names against the target's qrels (the Hybrid Test's golden qrels for its target);
``Acc@k`` (DPR top-k answer accuracy) against the gold answers and the passages' text.
"""

import pandas as pd

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.evaluation import accuracy_cutoff, aggregate, answer_accuracy, evaluate_run
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.qa import load_answers
from utilann.rag.prompts import load_passages

w, p = snakemake.wildcards, snakemake.params
with script_logging(snakemake.log[0], "evaluate_run") as log:
    qrels = split_qrels(read_table(snakemake.input.qrels), w.split)
    run = read_table(snakemake.input.run)
    cutoffs = [k for k in map(accuracy_cutoff, p.measures) if k is not None]
    per_query = evaluate_run(run, qrels, [m for m in p.measures if accuracy_cutoff(m) is None])
    if cutoffs:
        queries = read_table(snakemake.input.queries)
        answers = (
            load_answers(snakemake.input.answers, p.answers_format, queries)
            if p.answers_format
            else read_table(snakemake.input.answers)
        )
        judged = set(qrels["query_id"].astype(str))
        golds = {
            str(q): list(a)
            for q, a in zip(answers["query_id"], answers["answers"])
            if str(q) in judged and len(a)
        }
        log.info("Acc@%s over %d queries with gold answers", cutoffs, len(golds))
        top = run[run["query_id"].astype(str).isin(golds) & (run["rank"] <= max(cutoffs))]
        passages = load_passages(snakemake.input.corpus, top["doc_id"], titles=False)
        accuracy = answer_accuracy(run, golds, passages, cutoffs)
        per_query = pd.concat([per_query, accuracy], ignore_index=True)
    meta = {"run": w.run, "dataset": w.dataset, "split": w.split, "measures": p.measures}
    write_table(per_query, snakemake.output.per_query, schemas.PER_QUERY, meta)
    metrics = aggregate(per_query, w.run, w.dataset, w.split)
    write_table(metrics, snakemake.output.metrics, schemas.METRICS, meta)
    for row in metrics.itertuples(index=False):
        log.info("%s %s/%s %s = %.4f", row.run, row.dataset, row.split, row.measure, row.value)
