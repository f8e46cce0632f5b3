"""Encode one contiguous slice of a dataset's corpus with a run's encoder."""

from utilann import schemas
from utilann.dense import EncodeSettings, TextEncoder, encode_corpus_shard, limit_threads
from utilann.io import write_table
from utilann.logs import script_logging

p, w = snakemake.params, snakemake.wildcards
with script_logging(snakemake.log[0], "encode_corpus") as log:
    limit_threads(snakemake.threads)
    encoder = TextEncoder(snakemake.input.model, EncodeSettings(**p.encoding))
    table = encode_corpus_shard(encoder, snakemake.input.corpus, p.shard, p.shards)
    meta = {
        "run": w.run,
        "dataset": w.dataset,
        "shard": p.shard,
        "shards": p.shards,
        "encoding": p.encoding,
        "dtype": encoder.dtype,
    }
    write_table(table, snakemake.output.embeddings, schemas.EMBEDDINGS, meta)
    log.info(
        "encoded %d passages (shard %d of %d) in %s",
        table.num_rows,
        p.shard,
        p.shards,
        encoder.dtype,
    )
