# Dataset acquisition and ingestion into Parquet (shared by all experiments).


def download_params(wildcards):
    cfg = dataset_cfg(wildcards.dataset)
    return {
        "format": cfg["format"],
        "url": cfg.get("url"),
        "ir_datasets": cfg.get("ir_datasets"),
    }


rule download_dataset:
    output:
        directory(f"{RAW_DATASETS}/{{dataset}}"),
    params:
        source=download_params,
    log:
        "results/logs/datasets/{dataset}.download.log",
    conda:
        "../../envs/core.yaml"
    resources:
        runtime=240,
    script:
        "../scripts/download_dataset.py"


def ingest_format(wildcards):
    return dataset_cfg(wildcards.dataset)["format"]


rule ingest_dataset:
    input:
        raw=f"{RAW_DATASETS}/{{dataset}}",
    output:
        corpus=directory(f"{DATA}/{{dataset}}/corpus"),
        queries=f"{DATA}/{{dataset}}/queries.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
        answers=f"{DATA}/{{dataset}}/answers.parquet",
        negatives=f"{DATA}/{{dataset}}/negatives.parquet",
    params:
        format=ingest_format,
        shard_size=config["corpus"]["shard_size"],
    log:
        "results/logs/datasets/{dataset}.ingest.log",
    benchmark:
        "results/benchmarks/datasets/{dataset}.ingest.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=16000,
        runtime=120,
    script:
        "../scripts/ingest_dataset.py"
