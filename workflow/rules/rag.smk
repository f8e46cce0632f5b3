# Rules of the rag stage: answer each QA split from every run's top-k passages, score the
# answers, t-test every run against the baseline (paper Tables 4, 5 and 13; digest 6.2-6.3).
#
#   rag_generate  one job per (dataset, split) for ALL rag runs: the LLM is loaded once, a
#                 prompt shared by several runs is asked once, and answers are cached by
#                 content in llm.cache_dir (results/cache/llm: a rerun, a resumed job or
#                 another experiment reuses them; a fully cached job starts no engine).
#   rag_score     per (run, dataset, split): EM/F1/ROUGE-L/BLEU/BERTScore + R@k of the passages
#   significance  every run vs the baseline, over the retrieval and RAG per-query files
#
# The generator is the annotation LLM (same prepared model directory, same engine settings)
# unless rag.generator.model names another one.

check_rag_measures()
SIGNIFICANCE_BASELINE = significance_baseline()
RAG_RESOURCES = RAG["generator"]["resources"]


rule rag_generate:
    input:
        unpack(rag_generate_inputs),
    output:
        questions=f"{EXP}/rag/{{dataset}}.{{split}}.questions.parquet",
        generations=rag_generation_outputs(),
    log:
        f"{LOGS}/rag_generate/{{dataset}}.{{split}}.log",
    benchmark:
        f"{BENCH}/rag_generate/{{dataset}}.{{split}}.tsv"
    conda:
        "../../envs/llm.yaml"
    threads: RAG_RESOURCES["cpus"]
    resources:
        gpu=RAG_RESOURCES["gpu"],
        mem_mb=RAG_RESOURCES["mem_mb"],
        runtime=RAG_RESOURCES["runtime"],
    params:
        runs=rag_runs(),
        target=rag_target_params,
        questions=rag_question_params,
        generator=rag_generator_params,
        cache_dir=RAG_CACHE,
        cache_writer=rag_cache_writer,
        code_version=RAG_CODE_VERSION,
    script:
        "../scripts/rag_generate.py"


rule rag_score:
    input:
        generations=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.generations.parquet",
        questions=f"{EXP}/rag/{{dataset}}.{{split}}.questions.parquet",
        run=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
    output:
        per_query=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/rag/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    log:
        f"{LOGS}/rag_score/{{run}}.{{dataset}}.{{split}}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        measures=rag_answer_measures,
        top_k=rag_top_k,
        bertscore=rag_bertscore,
        code_version=RAG_CODE_VERSION,
    script:
        "../scripts/rag_score.py"


rule significance:
    input:
        retrieval=retrieval_files("perquery"),
        rag=rag_files("perquery"),
    output:
        table=f"{EXP}/significance.parquet",
    log:
        f"{LOGS}/significance.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        baseline=SIGNIFICANCE_BASELINE,
        requested_baseline=RAG["baseline"],
        alpha=RAG["alpha"],
    script:
        "../scripts/significance.py"


EXTRA_METRIC_FILES.extend(rag_files("metrics"))
