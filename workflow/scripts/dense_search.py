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
from utilann.runs import remove_query_hits, search_depth

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
    depth = search_depth(p.depth, p.remove_query)
    run = search(index, doc_ids, queries["query_id"].tolist(), query_matrix, depth)
    if p.remove_query:
        run, removed = remove_query_hits(run, p.depth)
        log.info("removed %d hits that were the query's own document (remove_query)", removed)
    meta = {
        "run": w.run,
        "depth": p.depth,
        "remove_query": p.remove_query,
        "encoding": p.encoding,
        "query_dtype": encoder.dtype,
        "passage_dtypes": passage_dtypes(snakemake.input.embeddings),
        "index": "faiss.IndexFlatIP",
    }
    write_table(run, snakemake.output.run, schemas.RUN, meta)
    write_trec_run(run, snakemake.output.trec, tag=w.run)
    log.info("wrote %d rows for %d queries", len(run), run["query_id"].nunique())
