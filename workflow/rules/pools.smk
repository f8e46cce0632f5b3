# Candidate pools for annotation: human positive(s) + top-n hard negatives per training query.

POOLS = config["pools"]
TRAIN_DS, TRAIN_SPLIT = config["train"]["dataset"], config["train"]["split"]


rule build_pools:
    input:
        **split_files(TRAIN_DS, TRAIN_SPLIT),
        candidates=get_pool_candidates,
        corpus=f"{DATA}/{TRAIN_DS}/corpus",
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
        judged_positives=POOLS["judged_positives"],
        # a generated split's qrels name each query's source passage: a pseudo positive
        positive_source="pseudo" if NEWCORPUS_ON else "human",
        shuffle=POOLS["shuffle"],
        shuffle_seed=POOLS["shuffle_seed"],
    script:
        "../scripts/build_pools.py"
