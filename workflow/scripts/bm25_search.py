"""BM25 batch search of one dataset split; writes the run as Parquet and TREC."""

from utilann import schemas
from utilann.bm25 import search
from utilann.io import read_table, write_table, write_trec_run
from utilann.logs import script_logging
from utilann.runs import remove_query_hits, search_depth

p = snakemake.params
with script_logging(snakemake.log[0], "bm25_search") as log:
    queries = read_table(snakemake.input.queries)  # the split's own queries
    log.info(
        "searching %d %s queries (k1=%s b=%s depth=%d)",
        len(queries),
        snakemake.wildcards.split,
        p.k1,
        p.b,
        p.depth,
    )
    depth = search_depth(p.depth, p.remove_query)
    run = search(snakemake.input.index, queries, p.k1, p.b, depth, snakemake.threads, p.variant)
    if p.remove_query:
        run, removed = remove_query_hits(run, p.depth)
        log.info("removed %d hits that were the query's own document (remove_query)", removed)
    meta = {
        "run": "bm25",
        "variant": p.variant,
        "k1": p.k1,
        "b": p.b,
        "depth": p.depth,
        "remove_query": p.remove_query,
    }
    write_table(run, snakemake.output.run, schemas.RUN, meta)
    write_trec_run(run, snakemake.output.trec, tag=f"bm25-{p.variant}")
    log.info("wrote %d rows for %d queries", len(run), run["query_id"].nunique())
