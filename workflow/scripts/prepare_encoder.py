"""Resolve the configured backbone (PyPI package, local dir or hub id) to a local HF dir."""

from utilann.logs import script_logging
from utilann.train.backbones import backbone_source, prepare_backbone

with script_logging(snakemake.log[0], "prepare_encoder") as log:
    name = snakemake.params.name
    log.info("backbone %s from %s", name, backbone_source(name))
    prepare_backbone(name, snakemake.output.model)
    log.info("saved to %s", snakemake.output.model)
