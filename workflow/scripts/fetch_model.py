"""Download one hub model into paths.models (rule fetch_model, a local rule)."""

from utilann.hub import fetch_model
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "fetch_model") as log:
    repo_id = snakemake.params.repo_id
    log.info("downloading %s from the Hugging Face hub", repo_id)
    fetch_model(repo_id, snakemake.output.model)
    log.info("saved to %s", snakemake.output.model)
