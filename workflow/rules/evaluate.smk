# Evaluation of every run: retrieval measures (ir_measures), the experiment's metrics table,
# its reproduction check, and paired t-tests of every run against the baseline over the
# retrieval and RAG per-query values (config evaluation.significance).
#
# On a cluster an evaluation runs in the same job as the search that made its run (group
# "search": one job instead of two, runtimes added); the tables run where Snakemake runs.


localrules:
    metrics_table,
    check_reproduction,
    significance,
    average_subsets,


rule evaluate_run:
    input:
        unpack(get_eval_input),
    output:
        per_query=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    log:
        f"{LOGS}/evaluate/{{run}}.{{dataset}}.{{split}}.log",
    group:
        "search"
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    params:
        measures=get_measures,
        answers_format=get_eval_answers_format,
    script:
        "../scripts/evaluate_run.py"


# The Hybrid Test's target scores the runs of its split on golden qrels that the judge made
# from those runs, so it cannot be in group "search" (the job that made its run): it is in
# group "hybrid" with the judge, whose job evaluates every run once the qrels are written (a
# rule in a group is never a local rule, and one job beats one per run).
ruleorder: evaluate_hybrid > evaluate_run


use rule evaluate_run as evaluate_hybrid with:
    input:
        unpack(get_eval_input),
    log:
        f"{LOGS}/evaluate/{{run}}.{{dataset}}.{{split}}.log",
    wildcard_constraints:
        dataset=names_regex([HYBRID[0]] if HYBRID else []),
        split=names_regex([HYBRID[1]] if HYBRID else []),
    group:
        "hybrid"


# A benchmark of several datasets (CQADupStack's 12 forums) is one target: the mean of its
# subsets' figures, as BEIR reports it; its per-query values are the subsets' (query ids
# prefixed with the subset), which the t-tests pool.
ruleorder: average_subsets > evaluate_run


rule average_subsets:
    input:
        unpack(get_subset_files),
    output:
        per_query=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.perquery.parquet",
        metrics=f"{EXP}/eval/{{run}}/{{dataset}}.{{split}}.metrics.parquet",
    log:
        f"{LOGS}/evaluate/{{run}}.{{dataset}}.{{split}}.log",
    wildcard_constraints:
        dataset=names_regex(sorted({d for d, _ in SUBSET_TARGETS})),
    conda:
        "../../envs/core.yaml"
    resources:
        mem_mb=4000,
        runtime=retry_runtime(30),
    script:
        "../scripts/average_subsets.py"


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
