"""One benchmark target from its subsets (CQADupStack): the mean of the subsets' figures.

Aggregates are the unweighted mean over subsets (BEIR's CQADupStack figure: each forum counts
once, however many queries it has); per-query values are every subset's, with the query id
prefixed by the subset's dataset name so that ids of different forums never collide.
"""

from utilann import schemas
from utilann.evaluation import average_subsets
from utilann.io import read_metadata, read_table, write_table
from utilann.logs import script_logging

w = snakemake.wildcards
with script_logging(snakemake.log[0], "average_subsets") as log:
    parts = {
        read_metadata(path)["dataset"]: (read_table(path), read_table(metrics))
        for path, metrics in zip(snakemake.input.perquery, snakemake.input.metrics, strict=True)
    }
    per_query, metrics = average_subsets(parts, w.run, w.dataset, w.split)
    meta = {"run": w.run, "dataset": w.dataset, "split": w.split, "subsets": sorted(parts)}
    write_table(per_query, snakemake.output.per_query, schemas.PER_QUERY, meta)
    write_table(metrics, snakemake.output.metrics, schemas.METRICS, meta)
    for row in metrics.itertuples(index=False):
        log.info(
            "%s %s/%s %s = %.4f (mean of %d subsets)",
            row.run,
            row.dataset,
            row.split,
            row.measure,
            row.value,
            len(parts),
        )
