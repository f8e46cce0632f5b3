#!/usr/bin/env bash
# Run by Snakemake in the new env: the workflow's own library from this checkout
# (UTILANN_WORKFLOW_DIR, set by the Snakefile), its dependencies being the env's pins.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e "${UTILANN_WORKFLOW_DIR:?set by the Snakefile}"
