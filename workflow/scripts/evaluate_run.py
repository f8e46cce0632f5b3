"""Evaluate runs on evaluation targets (utilann.evaluation_job): one run on every target, or
every run on the Hybrid Test's target."""

from utilann.evaluation_job import run_evaluations
from utilann.logs import script_logging

with script_logging(snakemake.log[0], "evaluate_run"):
    run_evaluations(snakemake.params.evaluations)
