# LLM annotation of the candidate pools: one job per pool shard runs the cascade RelSel ->
# pseudo-answer -> UtilSel | UtilRank on vLLM (prompts: paper Figures 4-7), then the shards are
# merged into the training labels and summarised in the annotation report (paper Table 1).
#
#   {EXP}/annotation/shard-{shard}/labels.parquet   LABELS, one row per (query, passage, strategy)
#   {EXP}/annotation/shard-{shard}/raw.parquet      RAW, every LLM call and its parse outcome
#   {EXP}/annotation/shard-{shard}/manifest.json    model, engine, prompts, calls made/cached
#   {EXP}/annotation/labels.parquet                 all shards (what training reads)
#   {EXP}/annotation/report.{parquet,md}            quality and cost per strategy
#
# Every LLM generation is also stored in llm.cache_dir (default results/cache/llm), keyed
# by content; that store is deliberately not a Snakemake output, so a failed or killed job
# keeps what it generated and its rerun resumes from there. The label files are not
# protected(): a params change (e.g. a new prompt version) must be able to rerun the job, and
# the expensive part - the generations - survives in the cache anyway.

ANNOTATION_GPUS = vllm_gpus(
    config["annotation"]["resources"], config["llm"]["engine"], "annotation.resources"
)


rule annotate_shard:
    input:
        pools=f"{EXP}/pools/shard-{{shard}}.parquet",
        model=llm_model_input(config["llm"]["model"]),
        # annotation.calibration: the full annotation starts once the judge passed the gate
        gate=calibration_gate(),
    output:
        labels=f"{ANN}/shard-{{shard}}/labels.parquet",
        raw=f"{ANN}/shard-{{shard}}/raw.parquet",
        manifest=f"{ANN}/shard-{{shard}}/manifest.json",
    log:
        f"{LOGS}/annotation/shard-{{shard}}.log",
    benchmark:
        f"{BENCH}/annotation/shard-{{shard}}.tsv"
    conda:
        job_env("llm", ANNOTATION_GPUS)
    threads: config["annotation"]["resources"]["cpus"]
    resources:
        **job_resources(config["annotation"]["resources"], ANNOTATION_GPUS),
    params:
        **annotation_job_params(),
        writer=get_annotation_writer,
    script:
        "../scripts/annotate.py"


rule merge_annotation:
    input:
        labels=annotation_shard_files("labels.parquet"),
    output:
        labels=f"{ANN}/labels.parquet",
    log:
        f"{LOGS}/annotation/merge.log",
    conda:
        "../../envs/llm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    script:
        "../scripts/annotate.py"


rule annotation_report:
    input:
        labels=annotation_shard_files("labels.parquet"),
        raw=annotation_shard_files("raw.parquet"),
    output:
        table=f"{ANN}/report.parquet",
        markdown=report(
            f"{ANN}/report.md",
            caption="../report/annotation.rst",
            category="1. Annotation",
        ),
    log:
        f"{LOGS}/annotation/report.log",
    conda:
        "../../envs/llm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    params:
        thresholds=config["annotation"]["utilrank_thresholds"],
    script:
        "../scripts/annotation_report.py"


# The annotation's budget before it runs (`utilann plan`): every prompt of a seeded sample of
# the pools rendered with the tokenizer only, no engine; calls, tokens, cached calls, shared
# prefix and, with a throughput (plan.throughput), hours and GPU-hours next to Table 17.
# The RAG jobs' rows too (plan.rag), from the splits and run files on disk when the rule
# runs (not inputs: the plan is for before the runs exist; it says what stood in for them).
# In the default targets (and so the HTML report) when plan.report is true.
localrules:
    plan_annotation,


rule plan_annotation:
    input:
        pools=pool_files(),
        model=llm_model_input(config["llm"]["model"]),
    output:
        plan=report(
            f"{ANN}/plan.md",
            caption="../report/annotation_plan.rst",
            category="1. Annotation",
        ),
    log:
        f"{LOGS}/annotation/plan.log",
    conda:
        "../../envs/llm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=retry_runtime(30),
    params:
        llm=config["llm"],
        annotation=config["annotation"],
        plan=config["plan"],
        cost=config["report"]["cost"],
    script:
        "../scripts/plan_annotation.py"
