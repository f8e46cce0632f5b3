"""The Hybrid Test's judge: the UtilSel prompt with the gold answer over the pool, then the
golden qrels (rule hybrid_judge; the work is utilann.hybrid.judge_files).

Only under ``__main__``: vLLM starts worker processes that re-import the main module.
"""

from utilann.hybrid import judge_files
from utilann.llm.templates import load_template
from utilann.logs import script_logging

if __name__ == "__main__":
    smk, p = snakemake, snakemake.params
    with script_logging(smk.log[0], "hybrid_judge") as log:
        judge = dict(p.judge)
        if smk.input.get("model"):  # a prepared model directory (packaged or fetched)
            judge["path"] = (
                smk.input.model[0] if isinstance(smk.input.model, list) else smk.input.model
            )
        manifest = judge_files(
            pool_path=smk.input.pool,
            questions_path=smk.input.questions,
            qrels_path=smk.input.qrels,
            split=p.split,
            judge=judge,
            template=load_template(p.template["name"], p.template["version"], p.template["dir"]),
            sampling=p.sampling,
            window_size=p.window_size,
            passage_max_words=p.passage_max_words,
            chunk_size=p.chunk_size,
            cache_dir=p.cache_dir,
            writer=p.writer,
            out={k: smk.output[k] for k in ("labels", "raw", "qrels", "manifest")},
        )
        log.info(
            "hybrid judge: %s; calls %s", manifest["pool"], manifest["steps"]["judge"]["parse"]
        )
