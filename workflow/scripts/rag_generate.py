"""Answer one QA split from the top-k passages of every RAG run, with one LLM engine.

All runs of a (dataset, split) are answered by this one job so that the model is loaded once.
Prompts identical across runs (the same top-k) are asked once, and every answer is stored in a
content-keyed cache (``utilann.annotate.cache.GenerationCache``, one SQLite file per writer)
as soon as its batch is done: a rerun, a resumed job or another experiment never pays for the
same prompt twice, and the engine is not even started when every prompt is cached.
"""

import random
import time

import pandas as pd

from utilann import schemas
from utilann.annotate.cache import GenerationCache
from utilann.io import read_table, write_table
from utilann.llm import PROMPT_TOO_LONG, vllm_version
from utilann.logs import script_logging
from utilann.qa import load_answers
from utilann.rag.generate import build_requests, generate, load_passages, prompt_key
from utilann.rag.prompts import load_template


def select_questions(answers, qrels, split, max_queries, seed):
    """Queries of ``split`` with gold answers, sorted by id; a seeded sample when capped."""
    in_split = set(qrels.loc[qrels["split"] == split, "query_id"].astype(str))
    golds = answers[answers["query_id"].astype(str).isin(in_split) & (answers["answers"].map(len) > 0)]
    golds = golds.assign(query_id=golds["query_id"].astype(str)).sort_values("query_id", kind="stable")
    if max_queries is not None and len(golds) > max_queries:
        keep = sorted(random.Random(seed).sample(list(golds["query_id"]), max_queries))
        golds = golds[golds["query_id"].isin(set(keep))]
    return golds.reset_index(drop=True)


class CachingEngine:
    """The ``chat`` backend of :func:`generate`: starts vLLM on first use, caches every batch."""

    def __init__(self, generator, cache, log):
        self.generator = generator
        self.cache = cache
        self.log = log
        self.engine = None
        self.generated = 0
        self.seconds = 0.0

    def chat(self, conversations, sampling):
        if self.engine is None:
            import os

            from utilann.llm import VLLMChat

            os.environ.update({k: str(v) for k, v in (self.generator["env"] or {}).items()})
            self.log.info("starting the LLM engine: %s", self.generator["path"])
            self.engine = VLLMChat(
                self.generator["path"],
                chat_template_kwargs=self.generator["chat_template_kwargs"],
                **self.generator["engine"],
            )
        started = time.perf_counter()
        outputs = self.engine.chat(conversations, sampling)
        seconds = time.perf_counter() - started
        share = seconds / max(1, len(outputs))
        model = self.generator["model"]
        self.cache.put_many(
            [
                (prompt_key(conv, sampling, model), "rag", out, share)
                for conv, out in zip(conversations, outputs)
                if out.finish_reason != PROMPT_TOO_LONG  # may fit another engine setting
            ],
            model,
        )
        self.generated += len(outputs)
        self.seconds += seconds
        return outputs


if __name__ == "__main__":
    w = snakemake.wildcards
    p = snakemake.params
    gen = p.generator
    with script_logging(snakemake.log[0], "rag_generate") as log:
        queries = read_table(snakemake.input.queries)
        qrels = read_table(snakemake.input.qrels)
        if p.questions["answers_format"]:
            answers = load_answers(snakemake.input.answers, p.questions["answers_format"], queries)
        else:
            answers = read_table(snakemake.input.answers)
        questions = select_questions(answers, qrels, w.split, p.questions["max_queries"], p.questions["seed"])
        if questions.empty:
            raise ValueError(
                f"{w.dataset}/{w.split}: no query of the split has a gold answer "
                f"({len(answers)} answers in {snakemake.input.answers})"
            )
        log.info("%s/%s: %d questions with gold answers (cap %s)", w.dataset, w.split, len(questions),
                 p.questions["max_queries"])
        qids = list(questions["query_id"])

        template = load_template(p.target["prompt"])
        runs = {name: read_table(path) for name, path in zip(p.runs, snakemake.input.runs)}
        wanted = set(qids)
        doc_ids = set()
        for run in runs.values():
            best = run[run["query_id"].astype(str).isin(wanted) & (run["rank"] <= p.target["top_k"])]
            doc_ids |= set(best["doc_id"].astype(str))
        passages = load_passages(snakemake.input.corpus, doc_ids)
        requests = {
            name: build_requests(run, queries, passages, template, p.target["top_k"], query_ids=qids)
            for name, run in runs.items()
        }

        sampling = gen["sampling"]
        # Question-major order: the prompts of one question (one per run) are sent together, so
        # the engine's prefix cache serves the part they share (instructions, and the passages
        # up to the first rank where the runs differ). Answers are regrouped by run below.
        order = {q: i for i, q in enumerate(qids)}
        tagged = sorted(
            ((name, r) for name, reqs in requests.items() for r in reqs),
            key=lambda pair: order[pair[1].query_id],
        )
        everything = [r for _, r in tagged]
        keys = [prompt_key(r.messages, sampling, gen["model"]) for r in everything]
        with GenerationCache(p.cache_dir, p.cache_writer) as cache:
            found = cache.get_many(keys)
            cached = pd.DataFrame(
                [(k, g.text) for k, (g, _) in found.items()], columns=["prompt_key", "raw_output"]
            )
            engine = CachingEngine(gen, cache, log)
            # One call over every run's prompts: a prompt shared by several runs is asked once.
            table = generate(engine, everything, sampling, model=gen["model"],
                             batch_size=gen["batch_size"], cache=cached)
        log.info("%d prompts over %d runs: %d generated in %.1f s, %d reused (cache, or shared by runs)",
                 len(everything), len(runs), engine.generated, engine.seconds, len(everything) - engine.generated)

        meta_common = {
            "dataset": w.dataset,
            "split": w.split,
            "top_k": p.target["top_k"],
            "prompt": {"id": template.id, "sha256": template.sha256},
            "model": gen["model"],
            "model_path": gen["path"],
            "engine": gen["engine"],
            "sampling": sampling,
            "questions": len(qids),
            "max_queries": p.questions["max_queries"],
            "seed": p.questions["seed"],
            "vllm_version": vllm_version(),
            "code_version": p.code_version,
        }
        write_table(questions, snakemake.output.questions, schemas.ANSWERS, meta_common)
        table["run"] = [name for name, _ in tagged]
        for name, path in zip(requests, snakemake.output.generations):
            part = table[table["run"] == name].reset_index(drop=True)
            write_table(part, path, schemas.GENERATIONS, {**meta_common, "run": name, "answered": len(part)})
            empty = int((part["prediction"].str.len() == 0).sum())
            log.info("%s: %d answers (%d empty)", name, len(part), empty)
