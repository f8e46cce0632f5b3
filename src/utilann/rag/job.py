"""File-level entry point of the RAG generation stage (what rule ``rag_generate`` calls).

One job answers one QA split for every RAG run, so the generator is loaded once. Prompts are
sent question-major through the shared cached generation loop
(:class:`~utilann.llm.batch.CachedGenerator`): identical prompts (the same top-k for two
runs) are asked once, every chunk of answers is committed to the content-keyed LLM cache as
soon as it is done, so a rerun, a resumed job or another experiment never pays for the same
prompt twice, and the engine is not even started when every prompt is cached.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.io import read_table, write_table
from utilann.llm.batch import CachedGenerator, Request, open_generator
from utilann.llm.engine import EngineSpec
from utilann.llm.templates import PromptTemplate, load_template_id
from utilann.qa import load_answers
from utilann.rag.prompts import GenerationRequest, build_requests, load_passages

log = logging.getLogger(__name__)

Path = str | os.PathLike[str]


def select_questions(
    answers: pd.DataFrame, qrels: pd.DataFrame, split: str, max_queries: int | None, seed: int
) -> pd.DataFrame:
    """Queries of ``split`` with a gold answer, sorted by id; a seeded sample when capped.

    The sample depends only on the split's answerable ids and ``seed``, so every run (and every
    experiment with the same data) is asked the same questions.
    """
    in_split = set(qrels.loc[qrels["split"] == split, "query_id"].astype(str))
    golds = answers.assign(query_id=answers["query_id"].astype(str))
    golds = golds[golds["query_id"].isin(in_split) & (golds["answers"].map(len) > 0)]
    golds = golds.sort_values("query_id", kind="stable")
    if max_queries is not None and len(golds) > max_queries:
        keep = set(random.Random(seed).sample(sorted(golds["query_id"]), max_queries))
        golds = golds[golds["query_id"].isin(keep)]
    return golds.reset_index(drop=True)


def clean_prediction(raw: str) -> str:
    """The answer that is scored: text after a reasoning block (``</think>``), stripped.

    Reasoning models (Qwen3) emit ``<think>...</think>`` before the answer; the authors keep
    only what follows it. Nothing else is removed, so the scores stay those of the raw answer.
    """
    return raw.rsplit("</think>", 1)[-1].strip()


def read_answers(
    answers_path: Path, questions: Mapping[str, Any], queries: pd.DataFrame
) -> pd.DataFrame:
    """A job's gold answers: the configured file in its ``answers_format``, else (null) the
    dataset's ingested ANSWERS table."""
    if questions["answers_format"]:
        return load_answers(answers_path, questions["answers_format"], queries)
    return read_table(answers_path)


def run_prompts(
    runs: Mapping[str, pd.DataFrame],
    queries: pd.DataFrame,
    corpus: Path | pd.DataFrame,
    template: PromptTemplate,
    k: int,
    query_ids: Sequence[str],
) -> dict[str, list[GenerationRequest]]:
    """Per run, the prompts of ``query_ids`` from its top-``k`` passages (only the passages
    some prompt shows are read from the corpus)."""
    wanted = set(query_ids)
    doc_ids: set[str] = set()
    for run in runs.values():
        best = run[run["query_id"].astype(str).isin(wanted) & (run["rank"] <= k)]
        doc_ids |= set(best["doc_id"].astype(str))
    passages = load_passages(corpus, doc_ids)
    return {
        name: build_requests(run, queries, passages, template, k, query_ids=query_ids)
        for name, run in runs.items()
    }


def question_major(
    requests: Mapping[str, Sequence[GenerationRequest]], query_ids: Sequence[str]
) -> list[tuple[str, GenerationRequest]]:
    """``(run, prompt)`` pairs in the order the job sends them: the prompts of one question
    (one per run) together, so the engine's prefix cache serves the part they share
    (instructions, and the passages up to the first rank where the runs differ)."""
    order = {q: i for i, q in enumerate(query_ids)}
    return sorted(
        ((name, r) for name, reqs in requests.items() for r in reqs),
        key=lambda pair: order[pair[1].query_id],
    )


def llm_requests(
    requests: Sequence[GenerationRequest], template: str, sampling: Mapping[str, Any]
) -> list[Request]:
    """The LLM calls of ``requests`` (rendered with the template of fingerprint
    ``template``): what the cached loop keys and sends."""
    return [Request(template, r.messages, sampling, item=f"query {r.query_id}") for r in requests]


def generate_answers(
    llm: CachedGenerator,
    requests: Sequence[GenerationRequest],
    template: str,
    sampling: Mapping[str, Any],
    desc: str = "rag",
) -> pd.DataFrame:
    """Answer ``requests`` (rendered with the template of fingerprint ``template``) through
    the cached loop; a GENERATIONS table in request order."""
    outcomes = llm.generate(llm_requests(requests, template, sampling), desc)
    return pd.DataFrame(
        [
            (
                r.query_id,
                list(r.doc_ids),
                clean_prediction(o.generation.text),
                o.generation.text,
                o.key,
            )
            for r, o in zip(requests, outcomes, strict=True)
        ],
        columns=schemas.GENERATIONS.names,
    )


def answer_split(
    *,
    dataset: str,
    split: str,
    queries_path: Path,
    qrels_path: Path,
    answers_path: Path,
    corpus_path: Path,
    runs: Mapping[str, Path],
    target: Mapping[str, Any],
    questions: Mapping[str, Any],
    generator: Mapping[str, Any],
    cache_dir: Path,
    cache_writer: str,
    code_version: int,
    questions_out: Path,
    generations_out: Mapping[str, Path],
) -> dict[str, int]:
    """Answer the questions of one split from every run's top-k passages; write the question
    table and one GENERATIONS file per run. Returns the answers per run.

    ``target``: ``top_k``, ``prompt`` (template id) and ``split``, the split whose questions
    are answered (default ``split``, which is also the target's name in file names and
    metadata); ``questions``: ``answers_format`` (null =
    ``answers_path`` is the dataset's ingested ANSWERS table), ``max_queries``, ``seed``;
    ``generator``: ``model`` (identity in cache keys), ``path`` (what the engine loads),
    ``engine`` (``vllm.LLM`` arguments), ``env`` (set before the engine starts),
    ``chat_template_kwargs``, ``backend`` and ``transformers`` (``llm.backend``,
    ``llm.transformers``), ``sampling`` and ``batch_size`` (prompts per engine call).
    """
    queries = read_table(queries_path)
    qrels = read_table(qrels_path)
    answers = read_answers(answers_path, questions, queries)
    source = target.get("split", split)  # the split answered (``split`` names the target)
    chosen = select_questions(answers, qrels, source, questions["max_queries"], questions["seed"])
    if chosen.empty:
        raise ValueError(
            f"{dataset}/{split}: no query of the split has a gold answer "
            f"({len(answers)} answers in {answers_path})"
        )
    log.info(
        "%s/%s: %d questions with gold answers (cap %s)",
        dataset,
        split,
        len(chosen),
        questions["max_queries"],
    )
    qids = list(chosen["query_id"])

    template = load_template_id(target["prompt"])
    tables = {name: read_table(path) for name, path in runs.items()}
    requests = run_prompts(tables, queries, corpus_path, template, target["top_k"], qids)

    sampling = generator["sampling"]
    # Answers are regrouped by run below.
    tagged = question_major(requests, qids)
    everything = [r for _, r in tagged]
    with open_generator(
        EngineSpec.from_job(generator), cache_dir, cache_writer, generator["batch_size"]
    ) as llm:
        # One call over every run's prompts: a prompt shared by several runs is asked once.
        table = generate_answers(
            llm, everything, template.fingerprint, sampling, f"rag {dataset}/{split}"
        )
    log.info(
        "%d prompts over %d runs: %d generated in %.1f s, %d reused (cache, or shared)",
        len(everything),
        len(tables),
        llm.generated,
        llm.engine_seconds,
        len(everything) - llm.generated,
    )

    meta = {
        "dataset": dataset,
        "split": split,
        "source_split": source,
        "top_k": target["top_k"],
        "prompt": {"id": template.id, "sha256": template.sha256},
        "model": generator["model"],
        "model_path": generator["path"],
        **llm.identity.run_metadata(),
        "engine": generator["engine"],
        "sampling": sampling,
        "questions": len(qids),
        "max_queries": questions["max_queries"],
        "seed": questions["seed"],
        "code_version": code_version,
    }
    write_table(chosen, questions_out, schemas.ANSWERS, meta)
    table["run"] = [name for name, _ in tagged]
    answered = {}
    for name, path in generations_out.items():
        part = table[table["run"] == name].reset_index(drop=True)
        write_table(part, path, schemas.GENERATIONS, {**meta, "run": name, "answered": len(part)})
        empty = int((part["prediction"].str.len() == 0).sum())
        log.info("%s: %d answers (%d empty)", name, len(part), empty)
        answered[name] = len(part)
    return answered
