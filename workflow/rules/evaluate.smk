# Retrieval evaluation (ir_measures) of every run, and the experiment's metrics table.


def measures_for(wildcards):
    extra = config["evaluation"]["extra_measures"].get(wildcards.dataset, [])
    return list(dict.fromkeys(config["evaluation"]["measures"] + extra))


rule evaluate_run:
    input:
        run=f"{EXP}/runs/{{run}}/{{dataset}}.{{split}}.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
    output:
        per_query=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    params:
        measures=measures_for,
    log:
        f"{LOGS}/evaluate/{{run}}.{{dataset}}.{{split}}.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/evaluate_run.py"


def metric_files(wildcards):
    files = [
        f"{EXP}/eval/{run}/{dataset}.{split}.metrics.parquet"
        for run in retrieval_runs()
        for dataset, split in eval_targets()
    ]
    return files + extra_metric_files()


EXTRA_METRIC_FILES = []


def extra_metric_files():
    """Stages whose figures belong in the metrics table register them here (RAG)."""
    return list(EXTRA_METRIC_FILES)


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
