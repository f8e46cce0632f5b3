"""The paper's tables for this experiment: HTML (for the report), Markdown and LaTeX each, and
summary.md with every table.

Which tables exist is the table registry's decision (``utilann.report.registry.tables_for``),
taken from the same settings the rule named its outputs with.
"""

from dataclasses import fields

from utilann.logs import script_logging
from utilann.report import ReportInputs, ReportSettings, summary_markdown, tables_for, write_text

p = snakemake.params
out = snakemake.output
with script_logging(snakemake.log[0], "report_tables") as log:
    settings = ReportSettings(**{f.name: p[f.name] for f in fields(ReportSettings)})
    inputs = ReportInputs.read(
        snakemake.input.retrieval,
        snakemake.input.rag,
        snakemake.input.significance,
        snakemake.input.get("annotation"),
        snakemake.input.get("manifests", []),
        # the new-corpus mode's and the audits' tables (inputs absent when they do not run)
        **{
            k: snakemake.input.get(k)
            for k in ("candidates", "labels", "pseudo_qrels", "false_negatives", "injection")
        },
    )
    tables = []
    for entry in tables_for(settings):
        table = entry.build(settings, inputs)
        for fmt, text in entry.render(table).items():
            write_text(text, out[entry.output_name(fmt)])
        log.info("%s: %d rows x %d columns", entry.key, *table.values.shape)
        tables.append(table)
    write_text(
        summary_markdown(
            f"Experiment {settings.experiment}: summary",
            tables,
            figures=[tuple(f) for f in p.figures],
            preamble=[
                f"Tables built from `results/{settings.experiment}/` (the HTML report has the "
                "same tables and the figures: `snakemake --report report.html`)."
            ],
        ),
        out.summary,
    )
