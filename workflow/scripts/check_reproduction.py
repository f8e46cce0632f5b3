"""Compare the metrics table (and the annotation report: paper Table 1) with the reproduction
matrix (published figures, tolerances)."""

import pandas as pd
import yaml

from utilann.io import atomic_path, read_table
from utilann.logs import script_logging
from utilann.reproduction import annotation_metrics, check

with script_logging(snakemake.log[0], "check_reproduction") as log:
    with open(snakemake.input.expected, encoding="utf-8") as handle:
        expected = yaml.safe_load(handle) or []
    metrics = read_table(snakemake.input.metrics)
    if "annotation" in snakemake.input.keys():
        train = snakemake.params.train
        report = read_table(snakemake.input.annotation)
        metrics = pd.concat(
            [metrics, annotation_metrics(report, train["dataset"], train["split"])],
            ignore_index=True,
        )
    table = check(metrics, expected, snakemake.params.experiment)
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    for row in table.itertuples(index=False):
        log.info(
            "%-4s %s %s/%s %s: %.4f vs %.4f +- %.3f (%s)",
            row.status,
            row.run,
            row.dataset,
            row.split,
            row.measure,
            row.obtained,
            row.expected,
            row.tolerance,
            row.source,
        )
