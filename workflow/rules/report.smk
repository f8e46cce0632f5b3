# The report: the paper's tables and figures computed for this experiment.
#
#   {EXP}/report/table*.html    Tables 1-6 (those that apply), shown by `snakemake --report`
#   {EXP}/report/fig3*.png      Figure 3b (UtilRank threshold), 3a (human-label ratio)
#   {EXP}/summary.md            every table as Markdown, for terminals
#
# Which tables and figures exist follows from the config: Table 1 and Figure 3b when training
# runs learn from LLM labels, Table 3 with several evaluation targets, Tables 4/5 with RAG
# targets, Table 6 when training runs differ in one setting, Figure 3a when a run is continued
# with human labels at two or more ratios (utilann.report).


report: "../report/workflow.rst"


localrules:
    report_tables,
    plot_utilrank_threshold,
    plot_human_ratio,


rule report_tables:
    input:
        unpack(report_table_inputs),
    output:
        **report_table_outputs(),
    log:
        f"{LOGS}/report_tables.log",
    conda:
        "../../envs/core.yaml"
    params:
        experiment=config["experiment"],
        runs=retrieval_runs(),
        evaluation=evaluation_params(),
        dataset_measure=dataset_measure(),
        bm25={k: config["bm25"][k] for k in ("variant", "k1", "b")},
        rag_runs=rag_runs(),
        rag_targets=rag_target_list(),
        generator=rag_generator()["model"],
        specs=run_settings(),
        primary=primary_target(),
        baseline=SIGNIFICANCE_BASELINE,
        alpha=RAG["alpha"],
        figures=report_figures(),
    script:
        "../scripts/report_tables.py"


rule plot_utilrank_threshold:
    input:
        annotation=f"{EXP}/annotation/report.parquet",
        metrics=primary_metric_files(utilrank_settings()),
    output:
        figure=report(
            f"{REPORT}/fig3b_utilrank_threshold.png",
            caption="../report/fig3b_utilrank_threshold.rst",
            category="5. Figures",
            labels={"figure": "Figure 3b", "shows": "UtilRank threshold"},
        ),
    log:
        f"{LOGS}/plot_utilrank_threshold.log",
    conda:
        "../../envs/core.yaml"
    params:
        specs=utilrank_settings(),
        target=primary_target(),
        measure=(primary_target() or {}).get("measure"),
    script:
        "../scripts/plot_utilrank_threshold.py"


rule plot_human_ratio:
    input:
        metrics=primary_metric_files(
            [*cl_settings(), *filter(None, [human_reference()])]
        ),
    output:
        figure=report(
            f"{REPORT}/fig3a_human_ratio.png",
            caption="../report/fig3a_human_ratio.rst",
            category="5. Figures",
            labels={"figure": "Figure 3a", "shows": "human-label ratio"},
        ),
    log:
        f"{LOGS}/plot_human_ratio.log",
    conda:
        "../../envs/core.yaml"
    params:
        specs=cl_settings(),
        target=primary_target(),
        measure=(primary_target() or {}).get("measure"),
        reference=human_reference(),
    script:
        "../scripts/plot_human_ratio.py"


STAGE_EXTRA_TARGETS.extend(
    [
        *(str(path) for path in report_table_outputs().values()),
        *(path for _, path in report_figures()),
    ]
)
