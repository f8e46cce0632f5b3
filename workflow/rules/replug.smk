# The REPLUG baseline's labels (paper App. A.2, D.2): per pool shard, an LM scores the gold
# answer's log-likelihood given each pool passage of every training query that has an answer
# (src/utilann/replug.py); runs with `label_source: replug` turn these into the utility
# distribution U they are trained on with KL(U || R).
#
#   {EXP}/replug/shard-{shard}.parquet    REPLUG_SCORES, one row per (query, pool passage)
#
# Scores are cached by content in llm.cache_dir like every LLM call (the scoring mode is part
# of the key): a killed job resumes from there, and a fully cached rerun starts no engine.

REPLUG = config["replug"]
REPLUG_GPUS = vllm_gpus(
    REPLUG["resources"], config["llm"]["engine"], "replug.resources"
)


rule replug_score:
    input:
        unpack(get_replug_score_input),
    output:
        scores=f"{EXP}/replug/shard-{{shard}}.parquet",
    log:
        f"{LOGS}/replug/shard-{{shard}}.log",
    benchmark:
        f"{BENCH}/replug/shard-{{shard}}.tsv"
    conda:
        job_env("llm", REPLUG_GPUS)
    threads: REPLUG["resources"]["cpus"]
    resources:
        **job_resources(REPLUG["resources"], REPLUG_GPUS),
    params:
        scorer=get_replug_scorer,
        prompt=get_replug_prompt,
        answers=get_replug_answers,
        chunk_size=REPLUG["chunk_size"],
        cache_dir=config["llm"]["cache_dir"],
        cache_writer=get_replug_cache_writer,
        code_version=REPLUG_CODE_VERSION,
    script:
        "../scripts/replug_score.py"
