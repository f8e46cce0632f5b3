# New-corpus mode (newcorpus.enabled): the training split train.split of train.dataset is
# generated from the corpus; pools, annotation and training then read it like any split.
#
#   {NC}/examples.parquet                 querygen_examples: the few-shot examples (FEW_SHOT)
#   {NC}/passages/shard-<i>.parquet       querygen_passages: the sampled source passages
#   {NC}/shard-<i>/queries.parquet        querygen_shard: one LLM question per passage, the
#   {NC}/shard-<i>/manifest.json            length filter and the optional self-check
#   {NC}/queries.parquet                  querygen_split: every candidate and its status
#   {NC}/split/{queries,qrels}.parquet    the generated split: kept queries, pseudo-qrels
#   {NC}/heldout/{queries,qrels}.parquet  newcorpus.heldout: kept questions held out of
#                                           training, an evaluation split of pseudo-qrels
#
# Generations are cached by content in llm.cache_dir like the annotation's (a killed job
# resumes, a rerun makes no call); one job per shard (newcorpus.shards).

QUERYGEN_RESOURCES = NEWCORPUS["resources"]
QUERYGEN_GPUS = vllm_gpus(
    QUERYGEN_RESOURCES, config["llm"]["engine"], "newcorpus.resources"
)
QUERYGEN_FILTERS = NEWCORPUS["filters"]


localrules:
    querygen_examples,


rule querygen_examples:
    input:
        unpack(get_querygen_examples_input),
    output:
        examples=f"{NC}/examples.parquet",
    log:
        f"{LOGS}/newcorpus/examples.log",
    conda:
        "../../envs/core.yaml"
    params:
        written=NEWCORPUS["examples"]["written"],
        source=NEWCORPUS["examples"]["from"],
        passage_max_words=NEWCORPUS["passage_max_words"],
    script:
        "../scripts/querygen.py"


rule querygen_passages:
    input:
        corpus=f"{DATA}/{config['train']['dataset']}/corpus",
    output:
        shards=querygen_shard_files(f"{NC}/passages/shard-{{shard}}.parquet"),
    log:
        f"{LOGS}/newcorpus/passages.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=8000,
        runtime=retry_runtime(30),
    params:
        sample=NEWCORPUS["passages"],
    script:
        "../scripts/querygen.py"


rule querygen_shard:
    input:
        passages=f"{NC}/passages/shard-{{shard}}.parquet",
        examples=f"{NC}/examples.parquet",
        model=llm_model_input(config["llm"]["model"]),
    output:
        queries=f"{NC}/shard-{{shard}}/queries.parquet",
        manifest=f"{NC}/shard-{{shard}}/manifest.json",
    log:
        f"{LOGS}/newcorpus/shard-{{shard}}.log",
    benchmark:
        f"{BENCH}/newcorpus/shard-{{shard}}.tsv"
    conda:
        job_env("llm", QUERYGEN_GPUS)
    threads: QUERYGEN_RESOURCES["cpus"]
    resources:
        **job_resources(QUERYGEN_RESOURCES, QUERYGEN_GPUS),
    params:
        generator=plan.llm_job(config, None),
        sampling=NEWCORPUS["sampling"],
        prompts=get_querygen_prompts,
        self_check=QUERYGEN_FILTERS["self_check"],
        min_words=QUERYGEN_FILTERS["min_words"],
        max_words=QUERYGEN_FILTERS["max_words"],
        passage_max_words=NEWCORPUS["passage_max_words"],
        chunk_size=NEWCORPUS["chunk_size"],
        cache_dir=config["llm"]["cache_dir"],
        writer=get_querygen_writer,
        code_version=NEWCORPUS_CODE_VERSION,
    script:
        "../scripts/querygen.py"


rule querygen_split:
    input:
        unpack(get_querygen_split_input),
    output:
        **heldout_outputs(),
        candidates=f"{NC}/queries.parquet",
        queries=f"{NC}/split/queries.parquet",
        qrels=f"{NC}/split/qrels.parquet",
    log:
        f"{LOGS}/newcorpus/split.log",
    benchmark:
        f"{BENCH}/newcorpus/split.tsv"
    conda:
        "../../envs/core.yaml"
    threads: BM25["threads"]
    resources:
        mem_mb=8000,
        runtime=retry_runtime(60),
    params:
        split=config["train"]["split"],
        duplicates=QUERYGEN_FILTERS["duplicates"],
        round_trip_k=QUERYGEN_FILTERS["round_trip_k"],
        bm25={k: BM25[k] for k in ("k1", "b", "variant")},
        unlabelled=get_querygen_unlabelled,
        heldout=NEWCORPUS["heldout"] if HELDOUT else None,
        code_version=NEWCORPUS_CODE_VERSION,
    script:
        "../scripts/querygen.py"
