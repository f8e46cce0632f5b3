"""Build the Lucene index of a dataset's corpus shards."""

from utilann.bm25 import build_index
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "bm25_index") as log:
    n = build_index(
        snakemake.input.corpus, snakemake.output[0], snakemake.params.variant, snakemake.threads
    )
    log.info("indexed %d documents (%s) into %s", n, snakemake.params.variant, snakemake.output[0])
