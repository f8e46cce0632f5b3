"""Exact inner-product search of one dataset split with a run's encoder; RUN Parquet + TREC."""

from utilann import schemas
from utilann.dense import (
    EncodeSettings,
    TextEncoder,
    build_index,
    limit_threads,
    passage_dtypes,
    read_embeddings,
    search,
)
from utilann.io import read_table, write_table, write_trec_run
from utilann.logs import script_logging

p, w = snakemake.params, snakemake.wildcards
with script_logging(snakemake.log[0], "dense_search") as log:
    limit_threads(snakemake.threads)
    queries = read_table(snakemake.input.queries)  # the split's own queries
    doc_ids, matrix = read_embeddings(snakemake.input.embeddings)
    log.info(
        "%d passages x %d dims; %d %s queries", len(doc_ids), matrix.shape[1], len(queries), w.split
    )
    encoder = TextEncoder(snakemake.input.model, EncodeSettings(**p.encoding))
    query_matrix = encoder.encode(queries["text"].tolist(), desc="encode queries")
    index = build_index(matrix, use_gpu=p.faiss_gpu)
    run = search(index, doc_ids, queries["query_id"].tolist(), query_matrix, p.depth)
    meta = {
        "run": w.run,
        "depth": p.depth,
        "encoding": p.encoding,
        "query_dtype": encoder.dtype,
        "passage_dtypes": passage_dtypes(snakemake.input.embeddings),
        "index": "faiss.IndexFlatIP",
    }
    write_table(run, snakemake.output.run, schemas.RUN, meta)
    write_trec_run(run, snakemake.output.trec, tag=w.run)
    log.info("wrote %d rows for %d queries", len(run), run["query_id"].nunique())
