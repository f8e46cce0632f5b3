"""Figure 3b: UtilRank threshold k against annotation precision/recall and retrieval quality.

Annotation precision and recall come from the annotation report for every configured k;
retrieval points exist only for runs trained on UtilRank labels at that k.
"""

from utilann import report as R
from utilann.io import read_table
from utilann.logs import script_logging

p = snakemake.params
with script_logging(snakemake.log[0], "plot_utilrank_threshold") as log:
    sweep = R.annotation_sweep(read_table(snakemake.input.annotation))
    metrics = R.concat_metrics([read_table(x) for x in snakemake.input.metrics])
    if p.target:  # the first evaluation target
        target = (p.target["dataset"], p.target["split"])
        points = R.retrieval_by_threshold(p.specs, metrics, target, p.measure)
        where = R.target_label(*target)
    else:
        points = R.retrieval_by_threshold({}, metrics, ("", ""), "")
        where = "(no evaluation target)"
    R.plot_threshold_sweep(sweep, points, p.measure or "", where, snakemake.output.figure)
    log.info("%d thresholds annotated, %d retrieval points", len(sweep), len(points))
