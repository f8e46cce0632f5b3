"""Annotation jobs: one pool shard through the LLM cascade (rule annotate_shard), or the
merge of every shard's labels into the training labels (rule merge_annotation).

The vLLM engine is created inside the library only on a cache miss, and only from here under
``__main__`` (vLLM starts worker processes that re-import the main module).
"""

from utilann.annotate.job import AnnotationJob, annotate_shard, merge_labels
from utilann.logs import script_logging


def run_shard(smk, log):
    # a packaged model is loaded from its prepared directory (the input), others by hub id/path
    model_path = smk.input.model[0] if smk.input.model else smk.params.model
    job = AnnotationJob(model_path=model_path, **dict(smk.params.items()))
    manifest = annotate_shard(
        job, smk.input.pools, smk.output.labels, smk.output.raw, smk.output.manifest
    )
    calls = manifest["llm_calls"]
    log.info(
        "shard %s: %d queries, %d LLM calls: %d generated, %d from cache (%.1f s)",
        smk.wildcards.shard,
        manifest["queries"]["queries"],
        calls["calls"],
        calls["generated"],
        calls["cached"],
        manifest["wall_seconds"],
    )


def run_merge(smk, log):
    empty = merge_labels(smk.input.labels, smk.output.labels)
    log.info("%d shards merged; queries without a positive: %s", len(smk.input.labels), empty)


if __name__ == "__main__":
    action = {"annotate_shard": run_shard, "merge_annotation": run_merge}[snakemake.rule]
    with script_logging(snakemake.log[0], snakemake.rule) as log:
        action(snakemake, log)
