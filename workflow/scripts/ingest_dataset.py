"""Validate a dataset in its standard layout and write it as Parquet tables."""

from utilann.datasets import ingest
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "ingest_dataset") as log:
    counts = ingest(
        snakemake.params.source_dir,
        snakemake.params.format,
        snakemake.output.corpus,
        snakemake.output.queries,
        snakemake.output.qrels,
        snakemake.params.shard_size,
        answers_path=snakemake.output.answers,
        negatives_path=snakemake.output.negatives,
    )
    log.info("ingested %s: %s", snakemake.wildcards.dataset, counts)
