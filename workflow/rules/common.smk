# Shared paths and small helpers used by every stage's rules.
#
# Layout of outputs (see docs/artifacts.md):
#   results/datasets/<dataset>/        corpus/ shards, queries, qrels (shared by experiments)
#   results/indexes/<dataset>.bm25-<variant>/   Lucene index
#   results/<experiment>/runs/<run>/<dataset>.<split>.{parquet,trec}
#   results/<experiment>/eval/<run>/<dataset>.<split>.{perquery,metrics}.parquet
#   results/<experiment>/metrics.parquet          every aggregate figure of the experiment

import os

EXP = f"results/{config['experiment']}"
DATA = "results/datasets"
INDEXES = "results/indexes"
LOGS = f"{EXP}/logs"
BENCH = f"{EXP}/benchmarks"
RAW_DATASETS = config["paths"]["datasets"]
MODELS = config["paths"]["models"]


wildcard_constraints:
    dataset="[a-z0-9][a-z0-9_-]*",
    split="[a-z0-9][a-z0-9_-]*",
    run="[a-z0-9][a-z0-9_-]*",
    shard="[0-9]+",


def dataset_cfg(name):
    """The config entry of a dataset, with a clear error for an unknown name."""
    try:
        return config["datasets"][name]
    except KeyError:
        raise ValueError(
            f"dataset {name!r} is used but not declared under `datasets:` in the config "
            f"(declared: {sorted(config['datasets'])})"
        ) from None


def dataset_tables(dataset):
    """The ingested Parquet tables of a dataset (corpus is a directory of shards)."""
    return {
        "corpus": f"{DATA}/{dataset}/corpus",
        "queries": f"{DATA}/{dataset}/queries.parquet",
        "qrels": f"{DATA}/{dataset}/qrels.parquet",
    }


def eval_targets():
    """(dataset, split) pairs every retrieval run is evaluated on."""
    return [(t["dataset"], t["split"]) for t in config["evaluation"]["targets"]]


def pool_shards():
    return list(range(config["pools"]["shards"]))


def retrieval_runs():
    """Names of all retrieval runs of the experiment: bm25 plus the dense runs."""
    return ["bm25"] + dense_runs()


def dense_runs():
    """Dense run names (zero-shot backbone and the trained runs), from `training:`."""
    training = config.get("training") or {}
    names = ["zeroshot"] if training.get("zeroshot", False) else []
    return names + list((training.get("runs") or {}).keys())


def final_targets():
    """What `snakemake` with no target builds: the metrics table (and stage extras)."""
    return [f"{EXP}/metrics.parquet"] + stage_extra_targets()


STAGE_EXTRA_TARGETS = []


def stage_extra_targets():
    """Stages register extra default targets (reports etc.) in STAGE_EXTRA_TARGETS."""
    return list(STAGE_EXTRA_TARGETS)


def download_params(wildcards):
    """Where a missing dataset can be fetched from."""
    cfg = dataset_cfg(wildcards.dataset)
    return {
        "format": cfg["format"],
        "url": cfg.get("url"),
        "ir_datasets": cfg.get("ir_datasets"),
    }


def raw_dataset_dir(wildcards):
    """The folder holding a dataset in its standard layout."""
    return f"{RAW_DATASETS}/{wildcards.dataset}"


def raw_dataset(wildcards):
    """Ingestion input: the download flag if we downloaded, else the user's folder if any."""
    folder = raw_dataset_dir(wildcards)
    flag = f"{folder}.download.done"
    if os.path.exists(flag) or not os.path.isdir(folder):
        return flag
    return folder


def ingest_format(wildcards):
    """The layout (beir, msmarco, tevatron) a dataset is read in."""
    return dataset_cfg(wildcards.dataset)["format"]


def pool_candidates(wildcards):
    """Ranked negatives for the pools: the dataset's own (Tevatron) or a BM25 run."""
    train = config["train"]
    if config["pools"]["source"] == "dataset":
        return f"{DATA}/{train['dataset']}/negatives.parquet"
    return f"{EXP}/runs/bm25/{train['dataset']}.{train['split']}.parquet"


def measures_for(wildcards):
    """ir_measures names for a dataset: the common ones plus its extra ones."""
    extra = config["evaluation"]["extra_measures"].get(wildcards.dataset, [])
    return list(dict.fromkeys(config["evaluation"]["measures"] + extra))


def metric_files(wildcards):
    """Every aggregate-figure file that goes into the experiment's metrics table."""
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
