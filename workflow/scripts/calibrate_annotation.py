"""Annotation calibration (rule calibrate_annotation): the cascade on the calibration sets.

The vLLM engine is created inside the library only on a cache miss, and only from here under
``__main__`` (vLLM starts worker processes that re-import the main module).
"""

from utilann.annotate.job import AnnotationJob, calibrate_files, load_calibration_sets
from utilann.logs import script_logging

# the rule's params beyond an annotation job's (AnnotationJob)
CALIBRATION_PARAMS = (
    "sets",
    "graded",
    "max_queries",
    "sample_seed",
    "order_seeds",
    "utilrank_threshold",
)


def main(smk, log):
    p = smk.params
    model_path = smk.input.model[0] if smk.input.model else p.model
    job_params = {k: v for k, v in smk.params.items() if k not in CALIBRATION_PARAMS}
    job = AnnotationJob(model_path=model_path, **job_params)
    sets = load_calibration_sets(p.sets, smk.input.pools, p.graded, p.max_queries, p.sample_seed)
    manifest = calibrate_files(job, sets, p.order_seeds, p.utilrank_threshold, smk.output)
    calls = manifest["llm_calls"]
    log.info(
        "calibration: %s queries per set, %d LLM calls: %d generated, %d from cache (%.1f s)",
        manifest["sets"],
        calls["calls"],
        calls["generated"],
        calls["cached"],
        manifest["wall_seconds"],
    )


if __name__ == "__main__":
    with script_logging(snakemake.log[0], snakemake.rule) as log:
        main(snakemake, log)
