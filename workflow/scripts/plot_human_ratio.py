"""Figure 3a: share of human labels in the curriculum stage against retrieval quality."""

from utilann import report as R
from utilann.io import read_table
from utilann.logs import script_logging

p = snakemake.params
with script_logging(snakemake.log[0], "plot_human_ratio") as log:
    metrics = R.concat_metrics([read_table(x) for x in snakemake.input.metrics])
    target = (p.target["dataset"], p.target["split"])
    curves = R.human_ratio_curves(p.specs, metrics, target, p.measure)
    reference = None
    if p.reference:
        value = R.metric_value(metrics, p.reference, target, p.measure)
        reference = (p.reference, value) if value is not None else None
    R.plot_human_ratio(
        curves, p.measure, R.target_label(*target), snakemake.output.figure, reference
    )
    log.info("%d curves, %d points", curves["parent"].nunique(), len(curves))
