# The human share of a curriculum stage 2 (label_source: human runs): which queries get human
# labels, and, in the new-corpus mode with newcorpus.oracle, who labels them.
#
#   {HUMAN}/<run>/selected.parquet   select_human_queries: the population ranked and the run's
#                                    query_ratio share chosen (random or active selection)
#   {HUMAN}/<run>/pools.parquet      oracle_human_labels: the chosen queries' pools with the
#                                    oracle's labels as human positives
#
# oracle_human_labels is the only rule that reads the oracle's qrels (in the SciFact demo,
# SciFact's training qrels): tests/e2e/test_newcorpus.py checks the DAG for it.


localrules:
    select_human_queries,
    oracle_human_labels,


rule select_human_queries:
    input:
        unpack(get_selection_input),
    output:
        selection=f"{HUMAN}/{{run}}/selected.parquet",
    log:
        f"{LOGS}/human/{{run}}.select.log",
    wildcard_constraints:
        run=names_regex(HUMAN_SHARE_RUNS),
    conda:
        "../../envs/core.yaml"
    params:
        selection=get_selection_params,
    script:
        "../scripts/human_share.py"


rule oracle_human_labels:
    input:
        selection=f"{HUMAN}/{{run}}/selected.parquet",
        pools=pool_files(),
        qrels=get_oracle_qrels,
        corpus=f"{DATA}/{config['train']['dataset']}/corpus",
    output:
        pools=f"{HUMAN}/{{run}}/pools.parquet",
    log:
        f"{LOGS}/human/{{run}}.oracle.log",
    wildcard_constraints:
        run=names_regex(HUMAN_SHARE_RUNS if ORACLE else []),
    conda:
        "../../envs/core.yaml"
    params:
        # The marker of the one step that reads the oracle's (training) qrels.
        oracle=f"{ORACLE['dataset']}/{ORACLE['split']}" if ORACLE else None,
    script:
        "../scripts/human_share.py"


# The LLM passes of two active selectors (utilann.evidence), over the selection population:
#
#   {SELECTION}/orders/seed-<s>.{labels,raw}.parquet   annotate_orders: RelSel with the pool
#   {SELECTION}/orders/manifest.json                    shuffled by each seed (display_orders)
#   {SELECTION}/confidence.parquet                      judge_confidence: the annotator's mean
#                                                       token log-probability of its answers
#                                                       (low_confidence)
#
# Both reuse the annotation's settings, engine and cache (the confidence pass replays the
# annotation's calls from the cache and only scores them).

EVIDENCE_RESOURCES = config["annotation"]["resources"]


rule annotate_orders:
    input:
        unpack(get_evidence_input),
    output:
        labels=order_files("labels"),
        raw=order_files("raw"),
        manifest=f"{SELECTION}/orders/manifest.json",
    log:
        f"{LOGS}/selection/orders.log",
    benchmark:
        f"{BENCH}/selection/orders.tsv"
    conda:
        job_env("llm", ANNOTATION_GPUS)
    threads: EVIDENCE_RESOURCES["cpus"]
    resources:
        **job_resources(EVIDENCE_RESOURCES, ANNOTATION_GPUS),
    params:
        annotator=get_evidence_annotator,
        origins=get_population_origins,
        seeds=ORDER_SEEDS,
        writer=evidence_writer("orders"),
        code_version=EVIDENCE_CODE_VERSION,
    script:
        "../scripts/human_share.py"


rule judge_confidence:
    input:
        unpack(get_evidence_input),
        labels=f"{ANN}/labels.parquet",
    output:
        confidence=f"{SELECTION}/confidence.parquet",
    log:
        f"{LOGS}/selection/confidence.log",
    benchmark:
        f"{BENCH}/selection/confidence.tsv"
    conda:
        job_env("llm", ANNOTATION_GPUS)
    threads: EVIDENCE_RESOURCES["cpus"]
    resources:
        **job_resources(EVIDENCE_RESOURCES, ANNOTATION_GPUS),
    params:
        annotator=get_evidence_annotator,
        origins=get_population_origins,
        step=SELECTION_CFG["confidence"]["step"],
        writer=evidence_writer("confidence"),
        code_version=EVIDENCE_CODE_VERSION,
    script:
        "../scripts/human_share.py"
