# The report: the paper's tables and figures computed for this experiment.
#
#   {EXP}/report/table*.html    Tables 1-6 (those that apply), shown by `snakemake --report`
#   {EXP}/report/table*.md|tex  the same tables as Markdown and as booktabs LaTeX
#   {EXP}/report/fig3*.png      Figure 3b (UtilRank threshold), 3a (human-label ratio)
#   {EXP}/summary.md            every table as Markdown, for terminals
#
# Which tables and figures exist follows from the config, decided by the report registry
# (utilann.report.registry): Table 1 and Figure 3b when training runs learn from LLM labels,
# Table 3 with several evaluation targets, Tables 4/5 with RAG targets, Table 6 when training
# runs differ in one setting, Figure 3a when a run is continued with human labels at two or
# more ratios.


report: "../report/workflow.rst"


localrules:
    report_tables,
    plot_utilrank_threshold,
    plot_human_ratio,


rule report_tables:
    input:
        unpack(get_report_tables_input),
    output:
        **report_table_outputs(),
    log:
        f"{LOGS}/report_tables.log",
    conda:
        "../../envs/core.yaml"
    params:
        # One param per ReportSettings field: a changed setting is named in `snakemake -n`.
        **asdict(REPORT_SETTINGS),
        figures=report_figures(),
    script:
        "../scripts/report_tables.py"


rule plot_utilrank_threshold:
    input:
        annotation=f"{ANN}/report.parquet",
        metrics=primary_metric_files(utilrank_settings(RUN_SETTINGS)),
    output:
        figure=report_figure("fig3b_utilrank_threshold"),
    log:
        f"{LOGS}/plot_utilrank_threshold.log",
    conda:
        "../../envs/core.yaml"
    params:
        specs=utilrank_settings(RUN_SETTINGS),
        target=PRIMARY,
        measure=(PRIMARY or {}).get("measure"),
    script:
        "../scripts/plot_utilrank_threshold.py"


rule plot_human_ratio:
    input:
        metrics=primary_metric_files(
            [
                *cl_settings(RUN_SETTINGS),
                *filter(None, [human_reference(RUN_SETTINGS, SIGNIFICANCE_BASELINE)]),
            ]
        ),
    output:
        figure=report_figure("fig3a_human_ratio"),
    log:
        f"{LOGS}/plot_human_ratio.log",
    conda:
        "../../envs/core.yaml"
    params:
        specs=cl_settings(RUN_SETTINGS),
        target=PRIMARY,
        measure=(PRIMARY or {}).get("measure"),
        reference=human_reference(RUN_SETTINGS, SIGNIFICANCE_BASELINE),
    script:
        "../scripts/plot_human_ratio.py"
