"""Fetch a dataset that is not present locally (BEIR zip or ir_datasets ids)."""

from utilann.datasets import DatasetError, download_beir, download_ir_datasets, offline_help
from utilann.logs import script_logging

source = snakemake.params.source
name = snakemake.wildcards.dataset
dest = snakemake.output.flag.removesuffix(".download.done")
with script_logging(snakemake.log[0], "download_dataset") as log:
    if source["format"] == "beir" and source.get("url"):
        log.info("downloading %s from %s", name, source["url"])
        download_beir(name, source["url"], dest, source.get("subsets") or ())
    elif source["format"] == "msmarco" and source.get("ir_datasets"):
        log.info("materialising %s from ir_datasets %s", name, source["ir_datasets"])
        download_ir_datasets(name, source["ir_datasets"], dest)
    else:
        raise DatasetError(
            offline_help(name, source["format"], dest, None) + " (no download source configured)"
        )
    log.info("dataset %s is in %s", name, dest)
