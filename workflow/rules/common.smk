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
