"""Encode one contiguous slice of a dataset's corpus with a run's encoder."""

from utilann import schemas
from utilann.dense import EncodeSettings, encode_corpus_shard, limit_threads
from utilann.io import write_table
from utilann.logs import script_logging

p, w = snakemake.params, snakemake.wildcards
settings = EncodeSettings(**p.encoding)
with script_logging(snakemake.log[0], "encode_corpus") as log:
    limit_threads(snakemake.threads)
    table = encode_corpus_shard(
        snakemake.input.model, snakemake.input.corpus, p.shard, p.shards, settings
    )
    meta = {
        "run": w.run,
        "dataset": w.dataset,
        "shard": p.shard,
        "shards": p.shards,
        "encoding": p.encoding,
    }
    write_table(table, snakemake.output.embeddings, schemas.EMBEDDINGS, meta)
    log.info("encoded %d passages (shard %d of %d)", table.num_rows, p.shard, p.shards)
