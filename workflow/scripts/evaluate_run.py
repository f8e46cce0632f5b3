"""Evaluate one run on one dataset split: per-query values and aggregates."""

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.evaluation import aggregate, evaluate_run
from utilann.io import read_table, write_table
from utilann.logs import script_logging

w = snakemake.wildcards
with script_logging(snakemake.log[0], "evaluate_run") as log:
    qrels = split_qrels(read_table(snakemake.input.qrels), w.split)
    per_query = evaluate_run(read_table(snakemake.input.run), qrels, snakemake.params.measures)
    meta = {
        "run": w.run,
        "dataset": w.dataset,
        "split": w.split,
        "measures": snakemake.params.measures,
    }
    write_table(per_query, snakemake.output.per_query, schemas.PER_QUERY, meta)
    metrics = aggregate(per_query, w.run, w.dataset, w.split)
    write_table(metrics, snakemake.output.metrics, schemas.METRICS, meta)
    for row in metrics.itertuples(index=False):
        log.info("%s %s/%s %s = %.4f", row.run, row.dataset, row.split, row.measure, row.value)
