# BM25 with pyserini: one Lucene index per dataset, one batch search per (dataset, split).

BM25 = config["bm25"]


rule bm25_index:
    input:
        corpus=f"{DATA}/{{dataset}}/corpus",
    output:
        directory(f"{INDEXES}/{{dataset}}.bm25-{BM25['variant']}"),
    log:
        f"results/logs/indexes/{{dataset}}.bm25-{BM25['variant']}.log",
    benchmark:
        f"results/benchmarks/indexes/{{dataset}}.bm25-{BM25['variant']}.tsv"
    conda:
        "../../envs/core.yaml"
    threads: BM25["threads"]
    resources:
        mem_mb=8000,
        runtime=retry_runtime(240),
    params:
        variant=BM25["variant"],
    script:
        "../scripts/bm25_index.py"


rule bm25_search:
    input:
        index=f"{INDEXES}/{{dataset}}.bm25-{BM25['variant']}",
        queries=get_split_queries,
    output:
        run=f"{EXP}/runs/bm25/{{dataset}}.{{split}}.parquet",
        trec=f"{EXP}/runs/bm25/{{dataset}}.{{split}}.trec",
    log:
        f"{LOGS}/bm25_search/{{dataset}}.{{split}}.log",
    benchmark:
        f"{BENCH}/bm25_search/{{dataset}}.{{split}}.tsv"
    conda:
        "../../envs/core.yaml"
    threads: BM25["threads"]
    resources:
        mem_mb=8000,
        runtime=retry_runtime(240),
    params:
        variant=BM25["variant"],
        k1=BM25["k1"],
        b=BM25["b"],
        depth=BM25["depth"],
        remove_query=get_remove_query,
    script:
        "../scripts/bm25_search.py"
