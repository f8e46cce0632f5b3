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
