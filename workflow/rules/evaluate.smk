# Retrieval evaluation (ir_measures) of every run, and the experiment's metrics table.
#
# On a cluster an evaluation runs in the same job as the search that made its run (group
# "search": one job instead of two, runtimes added); the tables run where Snakemake runs.


localrules:
    metrics_table,
    check_reproduction,


rule evaluate_run:
    input:
        run=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
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
        measures=measures_for,
    script:
        "../scripts/evaluate_run.py"


rule metrics_table:
    input:
        metric_files,
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
