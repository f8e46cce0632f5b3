"""Convert a GGUF model shipped inside a PyPI package into an HF directory vLLM can load."""

from utilann.llm.packaged import packaged_file, prepare_gguf_model
from utilann.logs import script_logging

if __name__ == "__main__":
    spec = snakemake.params.spec
    with script_logging(snakemake.log[0], "prepare_llm") as log:
        gguf = packaged_file(spec["package"], spec["gguf_file"])
        log.info("converting %s (%s) into %s", gguf, spec["dtype"], snakemake.output.model)
        prepare_gguf_model(gguf, snakemake.output.model, spec["dtype"])
