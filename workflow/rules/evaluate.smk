# Evaluation of every run: retrieval measures (ir_measures), the experiment's metrics table,
# its reproduction check, and paired t-tests of every run against the baseline over the
# retrieval and RAG per-query values (config evaluation.significance).
#
# On a cluster an evaluation runs in the same job as the search that made its run (group
# "search": one job instead of two, runtimes added); the tables run where Snakemake runs.


localrules:
    metrics_table,
    check_reproduction,
    significance,


rule evaluate_run:
    input:
        run=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.parquet",
        qrels=get_split_qrels,
    output:
        per_query=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    log:
        f"{LOGS}/evaluate/{{run}}.{{dataset}}.{{split}}.log",
    group:
        "search"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    params:
        measures=get_measures,
    script:
        "../scripts/evaluate_run.py"


rule metrics_table:
    input:
        metric_files(),
    output:
        table=f"{EXP}/metrics.parquet",
        tsv=f"{EXP}/metrics.tsv",
    log:
        f"{LOGS}/metrics_table.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/metrics_table.py"


rule check_reproduction:
    input:
        metrics=f"{EXP}/metrics.parquet",
        expected=repo_file(config["evaluation"]["reproduction"]),
    output:
        f"{EXP}/reproduction.tsv",
    log:
        f"{LOGS}/check_reproduction.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/check_reproduction.py"


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
        runtime=retry_runtime(30),
    params:
        baseline=SIGNIFICANCE_BASELINE,
        requested_baseline=SIGNIFICANCE["baseline"],
        alpha=SIGNIFICANCE["alpha"],
    script:
        "../scripts/significance.py"
