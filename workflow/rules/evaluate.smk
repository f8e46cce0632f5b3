# Evaluation of every run: retrieval measures (ir_measures), the experiment's metrics table,
# its reproduction check, and paired t-tests of every run against the baseline over the
# retrieval and RAG per-query values (config evaluation.significance).
#
# One job per run scores it on every target (plan.run_eval_targets; a benchmark's mean over
# its subsets, CQADupStack's, in the same job), one job scores every run on the Hybrid Test's
# target: one job per (run, target) cost Snakemake ~1 ms of planning each, on every rerun. On a
# cluster an evaluation is a small CPU job of its own (no GPU: it waits for no search but its
# run's); the tables run where Snakemake runs.


localrules:
    metrics_table,
    check_reproduction,
    significance,


rule evaluate_run:
    input:
        unpack(get_run_eval_input),
    output:
        **eval_outputs(["{run}"], RUN_EVAL_TARGETS),
    log:
        f"{LOGS}/evaluate/{{run}}.log",
    wildcard_constraints:
        run=names_regex(RETRIEVAL_RUNS),
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=retry_runtime(60),
    params:
        evaluations=get_run_evaluations,
    script:
        "../scripts/evaluate_run.py"


# The Hybrid Test's target scores the runs of its split on golden qrels that the judge made
# from those runs: its evaluation of every run is one job in group "hybrid" with the judge,
# run once the qrels are written (a rule in a group is never a local rule).
if HYBRID:

    use rule evaluate_run as evaluate_hybrid with:
        input:
            **eval_job_input(hybrid_evaluations()),
        output:
            **eval_outputs(RETRIEVAL_RUNS, [HYBRID]),
        log:
            f"{LOGS}/evaluate/hybrid.log",
        group:
            "hybrid"
        resources:
            mem_mb=4000,
            runtime=retry_runtime(30),
        params:
            evaluations=hybrid_evaluations(),


rule metrics_table:
    input:
        metric_files(),
    output:
        table=f"{EXP}/metrics.parquet",
        tsv=f"{EXP}/metrics.tsv",
    log:
        f"{LOGS}/metrics_table.log",
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/metrics_table.py"


rule check_reproduction:
    input:
        unpack(get_reproduction_input),
    output:
        f"{EXP}/reproduction.tsv",
    log:
        f"{LOGS}/check_reproduction.log",
    conda:
        "../../envs/core.yaml"
    params:
        experiment=config["experiment"],
        train={k: config["train"][k] for k in ("dataset", "split")},
    script:
        "../scripts/check_reproduction.py"


rule significance:
    input:
        retrieval=retrieval_files("perquery"),
        rag=rag_files("perquery"),
    output:
        table=f"{EXP}/significance.parquet",
    log:
        f"{LOGS}/significance.log",
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=8000,
        runtime=retry_runtime(30),
    params:
        baseline=SIGNIFICANCE_BASELINE,
        requested_baseline=SIGNIFICANCE["baseline"],
        alpha=SIGNIFICANCE["alpha"],
        second_baselines=SECOND_BASELINES,
        second_markers=SIGNIFICANCE["second_baseline"]["markers"],
    script:
        "../scripts/significance.py"
