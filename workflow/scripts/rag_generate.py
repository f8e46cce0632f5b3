"""Answer one QA split from the top-k passages of every RAG run, with one LLM engine
(rule rag_generate; the work is :func:`utilann.rag.job.answer_split`).

Only under ``__main__``: vLLM starts worker processes that re-import the main module.
"""

from utilann.logs import script_logging
from utilann.rag.job import answer_split

if __name__ == "__main__":
    smk = snakemake
    p = smk.params
    with script_logging(smk.log[0], "rag_generate"):
        answer_split(
            dataset=smk.wildcards.dataset,
            split=smk.wildcards.split,
            queries_path=smk.input.queries,
            qrels_path=smk.input.qrels,
            answers_path=smk.input.answers,
            corpus_path=smk.input.corpus,
            runs=dict(zip(p.runs, smk.input.runs, strict=True)),
            target=p.target,
            questions=p.questions,
            generator=p.generator,
            cache_dir=p.cache_dir,
            cache_writer=p.cache_writer,
            code_version=p.code_version,
            questions_out=smk.output.questions,
            generations_out=dict(zip(p.runs, smk.output.generations, strict=True)),
        )
