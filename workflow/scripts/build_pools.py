"""Build the annotation candidate pools and split them into shards (one per annotation job)."""

from utilann import schemas
from utilann.datasets import read_corpus, split_qrels
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.pools import build_pools, shard_of

p = snakemake.params
with script_logging(snakemake.log[0], "build_pools") as log:
    qrels = split_qrels(read_table(snakemake.input.qrels), p.split)
    pools = build_pools(
        qrels,
        read_table(snakemake.input.queries),
        read_corpus(snakemake.input.corpus),
        read_table(snakemake.input.candidates),
        negatives=p.negatives,
        max_queries=p.max_queries,
        seed=p.seed,
        source=p.source,
        judged_policy=p.judged_positives,
        positive_source=p.positive_source,
        shuffle=p.shuffle,
        shuffle_seed=p.shuffle_seed,
    )
    meta = {
        "split": p.split,
        "source": p.source,
        "negatives": p.negatives,
        "max_queries": p.max_queries,
        "seed": p.seed,
        "judged_positives": p.judged_positives,
        "positive_source": p.positive_source,
        "shuffle": p.shuffle,
        "shuffle_seed": p.shuffle_seed,
    }
    shards = shard_of(pools, len(snakemake.output.shards))
    for i, (shard, path) in enumerate(zip(shards, snakemake.output.shards)):
        write_table(shard, path, schemas.POOLS, {**meta, "shard": i, "shards": len(shards)})
    per_query = pools.groupby("query_id").size()
    log.info(
        "%d queries, %d passages (%.1f per query, %d human positives) in %d shards",
        per_query.size,
        len(pools),
        per_query.mean() if len(per_query) else 0.0,
        int(pools["is_human_positive"].sum()),
        len(shards),
    )
