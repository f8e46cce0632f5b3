# Candidate pools for annotation: human positive(s) + top-n hard negatives per training query.

POOLS = config["pools"]
TRAIN_DS, TRAIN_SPLIT = config["train"]["dataset"], config["train"]["split"]


def pool_candidates(wildcards):
    if POOLS["source"] == "dataset":
        return f"{DATA}/{TRAIN_DS}/negatives.parquet"
    return f"{EXP}/runs/bm25/{TRAIN_DS}.{TRAIN_SPLIT}.parquet"


rule build_pools:
    input:
        candidates=pool_candidates,
        corpus=f"{DATA}/{TRAIN_DS}/corpus",
        queries=f"{DATA}/{TRAIN_DS}/queries.parquet",
        qrels=f"{DATA}/{TRAIN_DS}/qrels.parquet",
    output:
        shards=expand(f"{EXP}/pools/shard-{{shard}}.parquet", shard=pool_shards()),
    params:
        split=TRAIN_SPLIT,
        source=POOLS["source"],
        negatives=POOLS["negatives"],
        max_queries=POOLS["max_queries"],
        seed=POOLS["seed"],
    log:
        f"{LOGS}/build_pools.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=16000,
        runtime=60,
    script:
        "../scripts/build_pools.py"
