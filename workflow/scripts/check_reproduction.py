"""Compare the metrics table with the reproduction matrix (published figures, tolerances)."""

import yaml

from utilann.io import atomic_path, read_table
from utilann.logs import script_logging
from utilann.reproduction import check

with script_logging(snakemake.log[0], "check_reproduction") as log:
    with open(snakemake.input.expected, encoding="utf-8") as handle:
        expected = yaml.safe_load(handle) or []
    table = check(read_table(snakemake.input.metrics), expected)
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
