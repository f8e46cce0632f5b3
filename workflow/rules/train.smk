# Rules of the train stage: backbone -> training set -> checkpoint (src/utilann/train/).
#
#   {MODELS}/encoders/<backbone>/            prepare_encoder: the backbone as a local HF dir
#   {EXP}/train/<run>/trainset.parquet       build_trainset: positives/negatives per query
#   {EXP}/models/<run>/                      train: HF checkpoint + biencoder.json
#   {EXP}/train/<run>/loss_curve.parquet     train: one row per optimiser step

import re

from utilann.train.backbones import backbone_slug
from utilann.train.spec import resolve_runs, zeroshot_spec

TRAINING = config["training"]
TRAIN_RESOURCES = TRAINING["resources"]
RUN_SPECS = resolve_runs(TRAINING)
ZEROSHOT = zeroshot_spec(TRAINING)
BACKBONES = {s.backbone_slug: s.backbone for s in [ZEROSHOT, *RUN_SPECS.values()]}
# Snakemake does not track library code: bump when a change of algorithm must retrain.
TRAIN_CODE_VERSION = 1


def names_regex(names):
    """A wildcard regex matching exactly ``names`` (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def encoder_dir(backbone):
    return f"{MODELS}/encoders/{backbone_slug(backbone)}"


def checkpoint_dir(run):
    """The model directory a dense run encodes with (the bare backbone for `zeroshot`)."""
    return (
        encoder_dir(ZEROSHOT.backbone) if run == "zeroshot" else f"{EXP}/models/{run}"
    )


def backbone_name(wildcards):
    return BACKBONES[wildcards.backbone]


def trainset_inputs(wildcards):
    """Pools always; the LLM labels only for runs trained on them."""
    inputs = {
        "pools": expand(f"{EXP}/pools/shard-{{shard}}.parquet", shard=pool_shards())
    }
    if RUN_SPECS[wildcards.run].trainset.needs_labels:
        inputs["labels"] = f"{EXP}/annotation/labels.parquet"
    return inputs


def trainset_params(wildcards):
    return {
        **RUN_SPECS[wildcards.run].trainset_params(),
        "code_version": TRAIN_CODE_VERSION,
    }


def train_init(wildcards):
    """The backbone, or the parent run's checkpoint for a curriculum stage 2."""
    spec = RUN_SPECS[wildcards.run]
    return (
        checkpoint_dir(spec.init_from) if spec.init_from else encoder_dir(spec.backbone)
    )


def train_params(wildcards):
    return RUN_SPECS[wildcards.run].train_params()


def checkpoint_output(path):
    out = directory(path)
    return protected(out) if TRAINING["protect_checkpoints"] else out


rule prepare_encoder:
    output:
        model=directory(f"{MODELS}/encoders/{{backbone}}"),
    log:
        "results/logs/encoders/{backbone}.log",
    wildcard_constraints:
        backbone=names_regex(BACKBONES),
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        name=backbone_name,
    script:
        "../scripts/prepare_encoder.py"


rule build_trainset:
    input:
        unpack(trainset_inputs),
    output:
        trainset=f"{EXP}/train/{{run}}/trainset.parquet",
    log:
        f"{LOGS}/build_trainset/{{run}}.log",
    wildcard_constraints:
        run=names_regex(RUN_SPECS),
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        labels=trainset_params,
    script:
        "../scripts/build_trainset.py"


rule train:
    input:
        trainset=f"{EXP}/train/{{run}}/trainset.parquet",
        init=train_init,
    output:
        model=checkpoint_output(f"{EXP}/models/{{run}}"),
        curve=f"{EXP}/train/{{run}}/loss_curve.parquet",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{BENCH}/train/{{run}}.tsv"
    wildcard_constraints:
        run=names_regex(RUN_SPECS),
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_RESOURCES["cpus"]
    resources:
        gpu=TRAIN_RESOURCES["gpu"],
        mem_mb=TRAIN_RESOURCES["mem_mb"],
        runtime=TRAIN_RESOURCES["runtime"],
    params:
        settings=train_params,
        # Processes (one per GPU): batch_size is per process, so this changes the result.
        world_size=max(1, TRAIN_RESOURCES["gpu"]),
        code_version=TRAIN_CODE_VERSION,
    script:
        "../scripts/train.py"
