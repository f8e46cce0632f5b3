from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/bm25.smk"
include: "workflow/rules/pools.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/rag.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        final_targets(),
    default_target: True
