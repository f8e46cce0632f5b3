"""The Hybrid Test's pool: sampled answerable queries and the union of the runs' top passages
(rule hybrid_pool; the work is utilann.hybrid.build_pool)."""

from utilann import schemas
from utilann.datasets import split_qrels
from utilann.hybrid import build_pool
from utilann.io import read_table, write_table
from utilann.logs import script_logging
from utilann.qa import load_answers
from utilann.rag.job import select_questions
from utilann.rag.prompts import read_corpus_rows

p = snakemake.params
with script_logging(snakemake.log[0], "hybrid_pool") as log:
    queries = read_table(snakemake.input.queries)
    qrels = read_table(snakemake.input.qrels)
    answers = (
        load_answers(snakemake.input.answers, p.answers_format, queries)
        if p.answers_format
        else read_table(snakemake.input.answers)
    )
    chosen = select_questions(answers, qrels, p.split, p.queries, p.seed)
    if chosen.empty:
        raise ValueError(f"no query of split {p.split!r} has a gold answer for the Hybrid Test")
    runs = dict(zip(p.runs, map(read_table, snakemake.input.runs), strict=True))
    wanted = set(chosen["query_id"])
    doc_ids = {
        str(d)
        for run in runs.values()
        for d in run.loc[
            run["query_id"].astype(str).isin(wanted) & (run["rank"] <= p.depth), "doc_id"
        ]
    }
    pool = build_pool(
        runs,
        list(chosen["query_id"]),
        queries,
        split_qrels(qrels, p.split),
        read_corpus_rows(snakemake.input.corpus, doc_ids),
        p.depth,
        p.seed,
    )
    meta = {"runs": list(p.runs), "depth": p.depth, "queries": len(chosen), "seed": p.seed}
    write_table(chosen, snakemake.output.questions, schemas.ANSWERS, meta)
    write_table(pool, snakemake.output.pool, schemas.POOLS, meta)
    log.info(
        "%d queries, %d pooled passages from %s (top %d each; %.1f per query)",
        len(chosen),
        len(pool),
        ", ".join(p.runs),
        p.depth,
        len(pool) / len(chosen),
    )
