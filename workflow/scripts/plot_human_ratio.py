"""Figure 3a: share of human labels in the curriculum stage against retrieval quality."""

import pandas as pd

from utilann import report as R
from utilann.io import read_table
from utilann.logs import script_logging

p = snakemake.params
with script_logging(snakemake.log[0], "plot_human_ratio") as log:
    metrics = pd.concat([read_table(x) for x in snakemake.input.metrics], ignore_index=True)
    target = (p.target["dataset"], p.target["split"])
    curves = R.human_ratio_curves(p.specs, metrics, target, p.measure)
    reference = None
    if p.reference:
        row = metrics[
            (metrics["run"] == p.reference)
            & (metrics["dataset"] == target[0])
            & (metrics["split"] == target[1])
            & (metrics["measure"] == p.measure)
        ]
        reference = (p.reference, float(row["value"].iloc[0])) if len(row) else None
    R.plot_human_ratio(
        curves, p.measure, R.target_label(*target), snakemake.output.figure, reference
    )
    log.info("%d curves, %d points", curves["parent"].nunique(), len(curves))
