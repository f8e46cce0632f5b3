# Dataset acquisition and ingestion into Parquet (shared by all experiments).
#
# A dataset folder a user placed in paths.datasets is a plain input: no rule owns it, so
# Snakemake can never delete or overwrite it. Only a missing folder is downloaded; the
# download leaves a flag file beside the folder, which is then the input of ingestion.
# Downloads run where Snakemake runs (compute nodes of a cluster often have no internet).


localrules:
    download_dataset,
    split_dataset,
    missing_answers,


rule download_dataset:
    output:
        flag=touch(f"{RAW_DATASETS}/{{dataset}}.download.done"),
    log:
        "results/logs/datasets/{dataset}.download.log",
    conda:
        "../../envs/core.yaml"
    params:
        source=get_dataset_source,
    script:
        "../scripts/download_dataset.py"


rule ingest_dataset:
    input:
        raw=get_raw_dataset,
    output:
        corpus=directory(f"{DATA}/{{dataset}}/corpus"),
        queries=f"{DATA}/{{dataset}}/queries.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
        answers=f"{DATA}/{{dataset}}/answers.parquet",
        negatives=f"{DATA}/{{dataset}}/negatives.parquet",
    log:
        "results/logs/datasets/{dataset}.ingest.log",
    benchmark:
        "results/benchmarks/datasets/{dataset}.ingest.tsv"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=16000,
        runtime=retry_runtime(120),
    params:
        source_dir=get_raw_dataset_dir,
        format=get_ingest_format,
        shard_size=config["corpus"]["shard_size"],
    script:
        "../scripts/ingest_dataset.py"


# One split's queries and judgements as their own files: a job reading a split depends on that
# split only (new training qrels rerun no test evaluation), and the new-corpus mode can show
# that its training qrels reach no job but the oracle (tests/e2e/test_newcorpus.py).
rule split_dataset:
    input:
        queries=f"{DATA}/{{dataset}}/queries.parquet",
        qrels=f"{DATA}/{{dataset}}/qrels.parquet",
    output:
        queries=f"{DATA}/{{dataset}}/splits/{{split}}/queries.parquet",
        qrels=f"{DATA}/{{dataset}}/splits/{{split}}/qrels.parquet",
    log:
        "results/logs/datasets/{dataset}.{split}.split.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/split_dataset.py"


# A configured gold-answer file (answers: {path, format}) that is not there: fail with what to
# put where. It is never downloaded (ir_datasets' msmarco-qna is gone, the official QA files
# and the Hugging Face export need a browser or a token on many machines).
rule missing_answers:
    output:
        "results/missing-answers/{slug}.txt",
    log:
        "results/logs/missing-answers/{slug}.log",
    conda:
        "../../envs/core.yaml"
    params:
        source=get_missing_answers,
    script:
        "../scripts/missing_answers.py"
