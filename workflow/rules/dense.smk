# Rules of the dense stage: encode corpus shards in parallel, then exact faiss search
# (src/utilann/dense.py). Runs: `zeroshot` (the bare backbone) and every `training.runs` name.
#
#   {EXP}/dense/<run>/<dataset>/emb-<i>.parquet     encode_corpus, i < encode_shards (dense.*)
#   {EXP}/runs/<run>/<dataset>.<split>.{parquet,trec}   dense_search (scored by evaluate.smk)

DENSE_GPUS = single_gpu(DENSE_RESOURCES, "dense.resources")


rule encode_corpus:
    input:
        model=get_dense_model,
        corpus=f"{DATA}/{{dataset}}/corpus",
    output:
        embeddings=embedding_output(
            f"{EXP}/dense/{{run}}/{{dataset}}/emb-{{eshard}}.parquet"
        ),
    log:
        f"{LOGS}/encode_corpus/{{run}}.{{dataset}}.{{eshard}}.log",
    benchmark:
        f"{BENCH}/encode_corpus/{{run}}.{{dataset}}.{{eshard}}.tsv"
    wildcard_constraints:
        run=names_regex(DENSE_RUNS),
        eshard="[0-9]+",
    conda:
        job_env("train", DENSE_GPUS)
    threads: DENSE_RESOURCES["cpus"]
    resources:
        **job_resources(DENSE_RESOURCES, DENSE_GPUS),
    params:
        encoding=get_passage_encoding,
        shard=get_encode_shard,
        shards=get_encode_shards,
        code_version=DENSE_CODE_VERSION,
    script:
        "../scripts/encode_corpus.py"


rule dense_search:
    input:
        model=get_dense_model,
        embeddings=get_corpus_embeddings,
        queries=get_split_queries,
    output:
        run=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.parquet",
        trec=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.trec",
    log:
        f"{LOGS}/dense_search/{{run}}.{{dataset}}.{{split}}.log",
    benchmark:
        f"{BENCH}/dense_search/{{run}}.{{dataset}}.{{split}}.tsv"
    wildcard_constraints:
        run=names_regex(DENSE_RUNS),
    conda:
        job_env("train", DENSE_GPUS)
    threads: DENSE_RESOURCES["cpus"]
    resources:
        **job_resources(DENSE_RESOURCES, DENSE_GPUS),
    params:
        encoding=get_query_encoding,
        depth=DENSE["depth"],
        remove_query=get_remove_query,
        faiss_gpu=DENSE["faiss_gpu"],
        code_version=DENSE_CODE_VERSION,
    script:
        "../scripts/dense_search.py"
