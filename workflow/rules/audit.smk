# Audits of the annotator (config audit; utilann.audit): before its labels are trusted,
#   - the false-negative audit: the UtilSel step re-reads the pools (BM25 hard negatives and
#     human positives) of a sample of training queries; the share of negatives it calls useful
#     is the false-negative rate (training.negatives.drop_judged_useful removes them);
#   - the injection audit: paired pools where one irrelevant passage carries an instruction
#     for the judge (attack templates: audit.injection.attacks), judged with and without it.
# Both use the annotation's LLM, prompts and decoding through the shared LLM cache (own writer
# files), and the cascade's pseudo-answers where the annotation stage wrote them.
#
#   {EXP}/audit/negatives.parquet            AUDIT_NEGATIVES, one row per judged passage
#   {EXP}/audit/negatives_summary.parquet    AUDIT_SUMMARY, the false-negative rate per dataset
#   {EXP}/audit/injection.parquet            INJECTION, one row per (step, query, attack) call
#   {EXP}/audit/injection_summary.parquet    INJECTION_SUMMARY, selection rate vs the control
#   {EXP}/audit/{negatives,injection}_raw.parquet, _manifest.json   every call; calls, time

AUDIT_GPUS = vllm_gpus(AUDIT["resources"], config["llm"]["engine"], "audit.resources")


rule audit_negatives:
    input:
        unpack(get_audit_input),
    output:
        table=f"{AUDIT_DIR}/negatives.parquet",
        summary=f"{AUDIT_DIR}/negatives_summary.parquet",
        raw=f"{AUDIT_DIR}/negatives_raw.parquet",
        manifest=f"{AUDIT_DIR}/negatives_manifest.json",
    log:
        f"{LOGS}/audit/negatives.log",
    benchmark:
        f"{BENCH}/audit/negatives.tsv"
    conda:
        job_env("llm", AUDIT_GPUS)
    threads: AUDIT["resources"]["cpus"]
    resources:
        **job_resources(AUDIT["resources"], AUDIT_GPUS),
    params:
        **audit_llm_params("negatives"),
        audit=AUDIT["false_negatives"],
        dataset=config["train"]["dataset"],
        split=config["train"]["split"],
    script:
        "../scripts/audit_negatives.py"


rule audit_injection:
    input:
        unpack(get_audit_input),
    output:
        table=f"{AUDIT_DIR}/injection.parquet",
        summary=f"{AUDIT_DIR}/injection_summary.parquet",
        raw=f"{AUDIT_DIR}/injection_raw.parquet",
        manifest=f"{AUDIT_DIR}/injection_manifest.json",
    log:
        f"{LOGS}/audit/injection.log",
    benchmark:
        f"{BENCH}/audit/injection.tsv"
    conda:
        job_env("llm", AUDIT_GPUS)
    threads: AUDIT["resources"]["cpus"]
    resources:
        **job_resources(AUDIT["resources"], AUDIT_GPUS),
    params:
        **audit_llm_params("injection"),
        audit=AUDIT["injection"],
        attacks=audit_attacks(),
    script:
        "../scripts/audit_injection.py"
