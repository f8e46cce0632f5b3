"""One split of an ingested dataset as its own queries and qrels tables."""

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.io import read_metadata, read_table, write_table
from utilann.logs import script_logging
from utilann.runs import split_queries

split = snakemake.wildcards.split
with script_logging(snakemake.log[0], "split_dataset") as log:
    queries, qrels = read_table(snakemake.input.queries), read_table(snakemake.input.qrels)
    judged = split_qrels(qrels, split)
    chosen = split_queries(queries, judged, split)
    meta = {**read_metadata(snakemake.input.qrels), "split": split}
    write_table(chosen, snakemake.output.queries, schemas.QUERIES, meta)
    write_table(judged, snakemake.output.qrels, schemas.QRELS, meta)
    log.info(
        "%s/%s: %d queries, %d judgements",
        snakemake.wildcards.dataset,
        split,
        len(chosen),
        len(judged),
    )
