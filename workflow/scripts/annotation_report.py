"""The annotation report (paper Table 1): quality and cost per strategy, UtilRank per k."""

from utilann.annotate.job import write_report
from utilann.logs import script_logging

if __name__ == "__main__":
    with script_logging(snakemake.log[0], "annotation_report") as log:
        report = write_report(
            snakemake.input.labels,
            snakemake.input.raw,
            snakemake.output.table,
            snakemake.output.markdown,
            snakemake.params.thresholds,
        )
        for row in report.itertuples(index=False):
            log.info(
                "%-12s P %.3f R %.3f pos/q %.2f empty %d failed %d",
                row.name,
                row.precision,
                row.recall,
                row.avg_positives,
                row.empty_queries,
                row.failed_parses,
            )
