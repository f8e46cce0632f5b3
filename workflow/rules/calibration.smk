# Annotation calibration (annotation.calibration): before the full annotation, the annotator
# judges sets with human judgements - a sample of the training pools and graded qrels such as
# TREC DL19 - with the annotation's own cascade, engine and LLM cache, in several shuffled
# display orders; a gate then stops the workflow when a figure is below its configured bar.
#
#   {EXP}/annotation/calibration/labels.parquet     CALIBRATION_LABELS, per (set, order)
#   {EXP}/annotation/calibration/raw.parquet        CALIBRATION_RAW, every LLM call
#   {EXP}/annotation/calibration/report.{parquet,md}  figures per (set, strategy)
#   {EXP}/annotation/calibration/positions.parquet  selection rate by display position
#   {EXP}/annotation/calibration/manifest.json      model, settings, calls made/cached
#   {EXP}/annotation/calibration/gate.json          every figure vs its bar (passed)
#
# The report is the output of a job that succeeds whatever the figures; the gate is its own
# job, so the figures stay on disk when the gate stops the run. annotate_shard waits for the
# gate (workflow/rules/annotate.smk).


localrules:
    calibration_gate,


rule calibrate_annotation:
    input:
        unpack(get_calibration_input),
    output:
        labels=f"{CAL}/labels.parquet",
        raw=f"{CAL}/raw.parquet",
        positions=f"{CAL}/positions.parquet",
        report=f"{CAL}/report.parquet",
        markdown=report(
            f"{CAL}/report.md",
            caption="../report/calibration.rst",
            category="1. Annotation",
        ),
        manifest=f"{CAL}/manifest.json",
    log:
        f"{LOGS}/annotation/calibration.log",
    benchmark:
        f"{BENCH}/annotation/calibration.tsv"
    conda:
        job_env("llm", ANNOTATION_GPUS)
    threads: config["annotation"]["resources"]["cpus"]
    resources:
        **job_resources(config["annotation"]["resources"], ANNOTATION_GPUS),
    params:
        **annotation_job_params(),
        writer=f"{config['experiment']}.calibration",
        sets=CALIBRATION_SETS,
        graded=calibration_graded_files(),
        max_queries=CALIBRATION["max_queries"],
        sample_seed=CALIBRATION["seed"],
        order_seeds=CALIBRATION["order_seeds"],
        utilrank_threshold=CALIBRATION["utilrank_threshold"],
    script:
        "../scripts/calibrate_annotation.py"


rule calibration_gate:
    input:
        report=f"{CAL}/report.parquet",
        markdown=f"{CAL}/report.md",
    output:
        gate=f"{CAL}/gate.json",
    log:
        f"{LOGS}/annotation/calibration_gate.log",
    conda:
        "../../envs/core.yaml"
    params:
        bars=CALIBRATION["gate"],
    script:
        "../scripts/calibration_gate.py"
