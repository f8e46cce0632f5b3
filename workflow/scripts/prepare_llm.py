"""Convert a GGUF model shipped inside a PyPI package into an HF directory vLLM can load
(copied from ``$UTILANN_MODEL_CACHE`` when that folder already holds the conversion)."""

import os

from utilann.llm.packaged import MODEL_CACHE_ENV, packaged_file, prepare_packaged_model
from utilann.logs import script_logging

if __name__ == "__main__":
    spec = snakemake.params.spec
    cache = os.environ.get(MODEL_CACHE_ENV) or None
    with script_logging(snakemake.log[0], "prepare_llm") as log:
        gguf = packaged_file(spec["package"], spec["gguf_file"])
        log.info("preparing %s (%s) in %s", gguf, spec["dtype"], snakemake.output.model)
        hit = prepare_packaged_model(gguf, snakemake.output.model, spec["dtype"], cache)
        if cache:
            log.info("%s %s", "copied from" if hit else "converted into", cache)
