# The Hybrid Test (paper 5.1, Table 2; config evaluation.hybrid): a judge LLM relabels the union
# of the runs' top passages for a sample of answerable queries, given the gold answer.
#
#   {EXP}/hybrid/questions.parquet   the sampled queries and their gold answers (ANSWERS)
#   {EXP}/hybrid/pool.parquet        the judged pool (POOLS: source = runs that retrieved it)
#   {EXP}/hybrid/labels.parquet      the judge's selections (LABELS, strategy judge)
#   {EXP}/hybrid/raw.parquet         every judge call (RAW)
#   {EXP}/hybrid/qrels.parquet       golden qrels: human + judge positives, split <split>-hybrid
#   {EXP}/hybrid/manifest.json       judge model, template, calls, pool statistics
#
# Every run is then evaluated on the golden qrels by rule evaluate_hybrid (evaluate.smk), as
# the target (<dataset>, <split>-hybrid), with evaluation.hybrid.measures (MRR@10, nDCG@10);
# on a cluster in the judge's job (group "hybrid").

HYBRID_RESOURCES = HYBRID_CFG["judge"]["resources"]
HYBRID_GPUS = vllm_gpus(
    HYBRID_RESOURCES, config["llm"]["engine"], "evaluation.hybrid.judge.resources"
)


localrules:
    hybrid_pool,


rule hybrid_pool:
    input:
        unpack(get_hybrid_pool_input),
    output:
        questions=f"{HYBRID_DIR}/questions.parquet",
        pool=f"{HYBRID_DIR}/pool.parquet",
    log:
        f"{LOGS}/hybrid/pool.log",
    conda:
        "../../envs/core.yaml"
    params:
        runs=HYBRID_RUNS,
        split=HYBRID_CFG["split"],
        queries=HYBRID_CFG["queries"],
        seed=HYBRID_CFG["seed"],
        depth=HYBRID_CFG["depth"],
        answers_format=get_hybrid_answers_format(),
    script:
        "../scripts/hybrid_pool.py"


rule hybrid_judge:
    input:
        pool=f"{HYBRID_DIR}/pool.parquet",
        questions=f"{HYBRID_DIR}/questions.parquet",
        qrels=split_files(HYBRID_CFG["dataset"], HYBRID_CFG["split"])["qrels"],
        model=llm_model_input(HYBRID_JUDGE["model"]),
    output:
        labels=f"{HYBRID_DIR}/labels.parquet",
        raw=f"{HYBRID_DIR}/raw.parquet",
        qrels=HYBRID_QRELS,
        manifest=f"{HYBRID_DIR}/manifest.json",
    log:
        f"{LOGS}/hybrid/judge.log",
    benchmark:
        f"{BENCH}/hybrid/judge.tsv"
    group:
        "hybrid"
    conda:
        job_env("llm", HYBRID_GPUS)
    threads: HYBRID_RESOURCES["cpus"]
    resources:
        **job_resources(HYBRID_RESOURCES, HYBRID_GPUS),
    params:
        judge=HYBRID_JUDGE,
        split=HYBRID_CFG["split"],
        template=hybrid_template(),
        sampling=hybrid_sampling(),
        window_size=HYBRID_CFG["judge"]["window_size"],
        passage_max_words=config["annotation"]["passage_max_words"],
        chunk_size=HYBRID_CFG["judge"]["chunk_size"],
        cache_dir=config["llm"]["cache_dir"],
        writer=f"{config['experiment']}.hybrid",
    script:
        "../scripts/hybrid_judge.py"
