# Candidate pools for annotation: human positive(s) + top-n hard negatives per training query.

POOLS = config["pools"]
TRAIN_DS, TRAIN_SPLIT = config["train"]["dataset"], config["train"]["split"]


rule build_pools:
    input:
        candidates=get_pool_candidates,
        corpus=f"{DATA}/{TRAIN_DS}/corpus",
        queries=f"{DATA}/{TRAIN_DS}/queries.parquet",
        qrels=f"{DATA}/{TRAIN_DS}/qrels.parquet",
    output:
        shards=pool_files(),
    log:
        f"{LOGS}/build_pools.log",
    benchmark:
        f"{BENCH}/build_pools.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=16000,
        runtime=retry_runtime(60),
    params:
        split=TRAIN_SPLIT,
        source=POOLS["source"],
        negatives=POOLS["negatives"],
        max_queries=POOLS["max_queries"],
        seed=POOLS["seed"],
        shuffle=POOLS["shuffle"],
        shuffle_seed=POOLS["shuffle_seed"],
    script:
        "../scripts/build_pools.py"
