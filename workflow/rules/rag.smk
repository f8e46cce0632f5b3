# Rules of the rag stage: answer each QA split from every run's top-k passages, score the
# answers (paper Tables 4, 5 and 13; paper 4.4, App. E.2).
#
#   rag_generate  one job per (dataset, split) for ALL rag runs: the LLM is loaded once, a
#                 prompt shared by several runs is asked once, and answers are cached by
#                 content in llm.cache_dir (results/cache/llm: a rerun, a resumed job or
#                 another experiment reuses them; a fully cached job starts no engine).
#   rag_score     per (run, dataset, split): EM/F1/ROUGE-L/BLEU/BERTScore + R@k of the passages
#
# {split} in these file names is the target's name (its split unless rag.targets[].name is
# set: the same split answered with top 1 and top 5 for paper Table 13).
#
# The generator is the annotation LLM (same prepared model directory, same engine settings)
# unless rag.generator.model names another one.

RAG_RESOURCES = RAG["generator"]["resources"]
RAG_GPUS = vllm_gpus(RAG_RESOURCES, config["llm"]["engine"], "rag.generator.resources")


localrules:
    significance,


# Scoring answers takes seconds, except BERTScore (a model over every answer): a job then.
if not any("BERTScore" in t["measures"] for t in RAG_TARGETS.values()):
    workflow.localrules("rag_score")


rule rag_generate:
    input:
        unpack(get_rag_generate_input),
    output:
        questions=f"{EXP}/rag/{{dataset}}.{{split}}.questions.parquet",
        generations=rag_generation_outputs(),
    log:
        f"{LOGS}/rag_generate/{{dataset}}.{{split}}.log",
    benchmark:
        f"{BENCH}/rag_generate/{{dataset}}.{{split}}.tsv"
    conda:
        job_env("llm", RAG_GPUS)
    threads: RAG_RESOURCES["cpus"]
    resources:
        **job_resources(RAG_RESOURCES, RAG_GPUS),
    params:
        runs=RAG_RUNS,
        target=get_rag_target_params,
        questions=get_rag_question_params,
        generator=get_rag_generator_params,
        cache_dir=RAG_CACHE,
        cache_writer=get_rag_cache_writer,
        code_version=RAG_CODE_VERSION,
    script:
        "../scripts/rag_generate.py"


rule rag_score:
    input:
        generations=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.generations.parquet",
        questions=f"{EXP}/rag/{{dataset}}.{{split}}.questions.parquet",
        run=get_rag_run,
        qrels=get_rag_qrels,
    output:
        per_query=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    log:
        f"{LOGS}/rag_score/{{run}}.{{dataset}}.{{split}}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    params:
        measures=get_rag_answer_measures,
        top_k=get_rag_top_k,
        source_split=get_rag_source_split,
        bertscore=get_rag_bertscore,
        code_version=RAG_CODE_VERSION,
    script:
        "../scripts/rag_score.py"
