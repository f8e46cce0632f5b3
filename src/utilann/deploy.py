"""How the jobs' software environments (envs/*.yaml) find the workflow's own library.

Snakemake builds a conda env from a copy of its yaml under ``.snakemake/conda/``, so a path in
the yaml (``-e ../``) would point there, not at the checkout. Instead each env's
``<name>.post-deploy.sh`` installs the library from ``$UTILANN_WORKFLOW_DIR``, which the
Snakefile sets to its own directory: post-deploy scripts run in the Snakemake process that
creates the envs (the controller), so the variable is always there, also on a cluster.
"""

from __future__ import annotations

import os

WORKFLOW_DIR_VAR = "UTILANN_WORKFLOW_DIR"


def export_workflow_dir(basedir: str | os.PathLike[str]) -> None:
    """Tell the post-deploy scripts (and the processes they start) where the checkout is."""
    os.environ[WORKFLOW_DIR_VAR] = os.fspath(basedir)
