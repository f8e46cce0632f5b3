"""Concatenate every stage's aggregate figures into the experiment's metrics table."""

import pandas as pd

from utilann import schemas
from utilann.io import atomic_path, read_table, write_table
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "metrics_table") as log:
    table = pd.concat([read_table(path) for path in snakemake.input], ignore_index=True)
    table = table.sort_values(["dataset", "split", "run", "measure"], kind="stable").reset_index(
        drop=True
    )
    write_table(table, snakemake.output.table, schemas.METRICS, {"sources": list(snakemake.input)})
    with atomic_path(snakemake.output.tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    log.info("metrics table: %d rows from %d files", len(table), len(snakemake.input))
