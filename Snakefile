import os

from snakemake.utils import min_version, validate

from utilann.config import migrate_deprecated
from utilann.deploy import export_workflow_dir
from utilann.self_contained import check_self_contained

min_version("9.0")


# The embedded default; `--configfile` and `--config` override it key by key.
configfile: os.path.join(workflow.basedir, "config/config.yaml")


# Renamed keys (e.g. annotation.cache_dir -> llm.cache_dir) still work, with a warning.
migrate_deprecated(config)
# experiment_kind: paper must not inherit the demo's data, RAG or generator sections, and
# has its own sections whole (not merged into the demo's).
check_self_contained(config, workflow.config_settings.overwrite_config)
validate(config, "config/schema.yaml")
# The post-deploy scripts of envs/*.yaml install the workflow's library from here.
export_workflow_dir(workflow.basedir)


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/bm25.smk"
include: "workflow/rules/newcorpus.smk"
include: "workflow/rules/pools.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/human.smk"
include: "workflow/rules/replug.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/dense.smk"
include: "workflow/rules/rag.smk"
include: "workflow/rules/hybrid.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
