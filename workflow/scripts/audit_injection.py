"""The injection audit: paired pools judged with and without an instruction planted in an
irrelevant passage (rule audit_injection; the work is utilann.audit.job.injection_files).

Only under ``__main__``: vLLM starts worker processes that re-import the main module.
"""

from utilann.audit.job import injection_files
from utilann.logs import script_logging

if __name__ == "__main__":
    smk, p = snakemake, snakemake.params
    with script_logging(smk.log[0], "audit_injection") as log:
        llm = dict(p.llm)
        if smk.input.get("model"):  # a prepared model directory (packaged or fetched)
            llm["path"] = smk.input.model[0]
        manifest = injection_files(
            pools=list(smk.input.pools),
            cascade_raw=list(smk.input.get("cascade_raw", [])),
            llm=llm,
            sampling=p.sampling,
            decoding=p.decoding,
            prompts=p.prompts,
            audit=p.audit,
            attacks_path=p.attacks["path"],
            passage_max_words=p.passage_max_words,
            chunk_size=p.chunk_size,
            cache_dir=p.cache_dir,
            writer=p.writer,
            out={k: smk.output[k] for k in ("table", "summary", "raw", "manifest")},
        )
        if "skipped" in manifest:
            log.warning("injection audit %s", manifest["skipped"])
        else:
            log.info("injection audit: %s; %.1f s", manifest["steps"], manifest["wall_seconds"])
