# Rules of the train stage: backbone -> training set -> checkpoint (src/utilann/train/).
#
#   {MODELS}/encoders/<backbone>/            prepare_encoder: the backbone as a local HF dir
#   {EXP}/train/<run>/trainset.parquet       build_trainset: positives/negatives per query
#   {EXP}/models/<run>/                      train: HF checkpoint + biencoder.json
#   {EXP}/train/<run>/loss_curve.parquet     train: one row per optimiser step
#   {EXP}/train/<run>/resume/step-<N>/       train: resume state (not an output; removed
#                                            once the run's checkpoint is written)


# Hub backbones are downloaded where Snakemake runs, once, before any training job.
localrules:
    prepare_encoder,


TRAIN_GPUS = torchrun_gpus(TRAIN_RESOURCES, "training.resources")


rule prepare_encoder:
    output:
        model=directory(f"{MODELS}/encoders/{{backbone}}"),
    log:
        "results/logs/encoders/{backbone}.log",
    wildcard_constraints:
        backbone=names_regex(BACKBONES),
    conda:
        "../../envs/train.yaml"
    params:
        name=get_backbone_name,
    script:
        "../scripts/prepare_encoder.py"


rule build_trainset:
    input:
        unpack(get_trainset_input),
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
        runtime=retry_runtime(30),
    params:
        labels=get_trainset_params,
    script:
        "../scripts/build_trainset.py"


rule train:
    input:
        trainset=f"{EXP}/train/{{run}}/trainset.parquet",
        init=get_train_init,
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
        job_env("train", TRAIN_GPUS)
    threads: TRAIN_RESOURCES["cpus"]
    resources:
        **job_resources(TRAIN_RESOURCES, TRAIN_GPUS),
        # How often a job saves resume state is about where it runs (its time limit), not
        # about the result (a resumed run ends with the same weights): a resource, not a
        # param, so changing it never retrains a finished run.
        checkpoint_every_steps=TRAINING["checkpoints"]["every_steps"],
        checkpoint_keep=TRAINING["checkpoints"]["keep"],
    params:
        settings=get_train_params,
        resume_dir=get_train_resume_dir,
        # Processes (one per GPU): batch_size is per process, so this changes the result.
        world_size=world_size(TRAIN_GPUS),
        code_version=TRAIN_CODE_VERSION,
    script:
        "../scripts/train.py"
