"""What the RAG generation will cost, planned from its prompts alone (paper 4.4).

One RAG job per target and generator (:func:`utilann.plan.rag_targets`) answers its
questions from every RAG run's top-k passages (:func:`utilann.plan.rag_runs`). The planner
builds the job's prompts with the job's own functions (:func:`~utilann.rag.job.
select_questions`, :func:`~utilann.rag.job.run_prompts`, :func:`~utilann.rag.job.
question_major`, :func:`~utilann.rag.job.llm_requests`, the job's params from
:func:`utilann.plan.rag_question_params` and :func:`utilann.plan.rag_generator_params`) and
sends them through the annotation planner's engine-less generator
(:class:`~utilann.budget.PlanningGenerator`): every prompt is tokenized with the generator's
tokenizer (or a stated proxy, ``plan.rag.tokenizers``), its cache key is the job's, a prompt
shared by two runs is asked once as in the job, and the rows (:func:`~utilann.budget.
plan_row`) count tokens, shared prefix and time exactly as the annotation's do. A call that is
not cached is assumed to answer the question's first gold answer (capped at ``max_tokens``).

The retrieval runs do not exist before the pipeline runs, so each job says what its prompts
were built from:

* questions: the job's own (the split's tables and gold answers on disk, the job's cap and
  seed); where the split is not on disk, a stand-in: real NQ test questions with their gold
  Wikipedia passage (``$UTILANN_SHARED_DATA/nq-open/oracle-beir``), scaled to the count the
  config declares for that split (``plan.rag.questions``);
* passages: a run's real top-k where its run file exists; otherwise ``top_k`` passages per
  question sampled from the corpus (the ingested one, else the stand-in's) with a fixed seed:
  real passage lengths, but drawn independently per run, so the prefix two runs' prompts
  share is a lower bound and the cache holds none of them.

A seeded sample of ``plan.sample_queries`` questions is rendered per job; its totals are
scaled to the job's question count.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from utilann import plan, schemas
from utilann.budget import (
    Planned,
    PlanningGenerator,
    PrefixCache,
    block_size,
    load_tokenizer,
    plan_row,
    planned_calls,
)
from utilann.io import read_table
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import ChatRenderer, EngineSpec
from utilann.llm.templates import load_template_id
from utilann.llm.throughput import Throughput
from utilann.pools import sample_queries
from utilann.rag.job import (
    llm_requests,
    question_major,
    read_answers,
    run_prompts,
    select_questions,
)

log = logging.getLogger(__name__)

#: real NQ test questions, each with its gold Wikipedia passage and answers, in BEIR layout,
#: under $UTILANN_SHARED_DATA: the stand-in questions of a split that is not on disk
SHARED_QA_STANDIN = "nq-open/oracle-beir"
STANDIN_SPLIT = "test"


@dataclass(frozen=True)
class JobInput:
    """One RAG job's rendered questions, the questions they stand for, the corpus and runs
    its prompts are built from, and a sentence saying where each came from."""

    queries: pd.DataFrame
    questions: pd.DataFrame  # ANSWERS rows of the rendered questions, in the job's order
    question_count: int
    corpus: str | pd.DataFrame
    runs: dict[str, pd.DataFrame]
    source: str


@dataclass
class RagPlan:
    """The RAG rows of a plan (one per job and a ``rag total``) and where they came from."""

    table: pd.DataFrame
    sources: dict[str, str]


# --- inputs --------------------------------------------------------------------------------


def job_questions(
    config: Mapping[str, Any],
    dataset: str,
    target: Mapping[str, Any],
    results: str | Path,
    shared_data: str | None,
) -> tuple[pd.DataFrame, pd.DataFrame, int, str | pd.DataFrame, str]:
    """``(queries, questions, question count, corpus, source)`` of one job: the questions the
    job itself selects where its split is on disk, else the stand-in's (module docstring)."""
    split = target["split"]
    params = plan.rag_question_params(config, target)
    data = Path(results, "datasets", dataset)
    tables = data / "splits" / split
    answers = Path(target["answers"]["path"]) if target["answers"] else data / "answers.parquet"
    on_disk = [tables / "queries.parquet", tables / "qrels.parquet", answers]
    if all(p.exists() for p in on_disk):
        queries = read_table(tables / "queries.parquet")
        chosen = select_questions(
            read_answers(answers, params, queries),
            read_table(tables / "qrels.parquet"),
            split,
            params["max_queries"],
            params["seed"],
        )
        if chosen.empty:
            raise ValueError(
                f"{dataset}/{split}: no query of the split has a gold answer in {answers}"
            )
        cap = params["max_queries"]
        return (
            queries,
            chosen,
            len(chosen),
            str(data / "corpus"),
            f"the job's {len(chosen):,} questions of {dataset}/{split} (gold answers {answers}"
            + (f"; cap {cap}, seed {params['seed']}" if cap else "")
            + ")",
        )
    missing = [str(p) for p in on_disk if not p.exists()]
    declared = config["plan"]["rag"]["questions"].get(f"{dataset}/{split}")
    standin = Path(shared_data or "", SHARED_QA_STANDIN)
    if not declared or not shared_data or not standin.exists():
        raise FileNotFoundError(
            f"RAG target {dataset}/{split}: {', '.join(missing)} missing, so its questions are "
            "unknown: build the split first (snakemake --until split_dataset, no LLM), or "
            f"declare its question count (plan.rag.questions: {{{dataset}/{split}: N}}) with "
            f"$UTILANN_SHARED_DATA holding {SHARED_QA_STANDIN} (stand-in questions)"
        )
    queries, qrels, corpus, answers_table = read_standin(standin)
    chosen = select_questions(answers_table, qrels, STANDIN_SPLIT, None, params["seed"])
    cap = params["max_queries"]
    count = min(declared, cap) if cap else declared
    log.warning(
        "RAG target %s/%s: NOT its questions (%s missing); stand-in questions from %s",
        dataset,
        split,
        missing[0],
        standin,
    )
    return (
        queries,
        chosen,
        count,
        corpus,
        f"NOT the configured questions ({missing[0]} missing): NQ test questions of {standin} "
        f"as a stand-in, scaled to {count:,} questions (plan.rag.questions"
        + (f", capped at rag.max_queries {cap}" if cap and cap < declared else "")
        + ")",
    )


@functools.lru_cache(maxsize=2)
def read_standin(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """QUERIES, QRELS, CORPUS and ANSWERS tables of the BEIR-layout stand-in at ``root``."""
    from utilann.datasets import read_beir

    data = read_beir(root)
    return (
        pd.DataFrame(list(data.queries.items()), columns=schemas.QUERIES.names),
        pd.DataFrame(data.qrels, columns=schemas.QRELS.names),
        pd.DataFrame(data.corpus, columns=schemas.CORPUS.names),
        data.answers,
    )


def sampled_runs(
    corpus: str | pd.DataFrame,
    runs: Sequence[str],
    query_ids: Sequence[str],
    k: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Stand-in RUN tables: ``k`` passages per run and question drawn from ``corpus`` (a
    CORPUS table or shard directory; without replacement while the corpus has enough)."""
    slots = len(runs) * len(query_ids) * k
    if not slots:
        return {}
    rng = np.random.default_rng(seed)
    if isinstance(corpus, pd.DataFrame):
        total = len(corpus)
        pick = rng.choice(total, size=slots, replace=slots > total)
        ids = corpus["doc_id"].astype(str).to_numpy()[pick]
    else:
        shards = ds.dataset(corpus, format="parquet")
        total = shards.count_rows()
        pick = rng.choice(total, size=slots, replace=slots > total)
        ids = np.asarray(shards.take(pick, columns=["doc_id"])["doc_id"].to_pylist())
    grid = ids.reshape(len(runs), len(query_ids), k)
    ranks = np.arange(1, k + 1)
    return {
        run: pd.DataFrame(
            {
                "query_id": np.repeat(np.asarray(query_ids, dtype=object), k),
                "doc_id": grid[r].reshape(-1),
                "rank": np.tile(ranks, len(query_ids)),
                "score": np.zeros(len(query_ids) * k, dtype=np.float32),
            }
        )
        for r, run in enumerate(runs)
    }


def job_input(
    config: Mapping[str, Any],
    dataset: str,
    target: Mapping[str, Any],
    results: str | Path,
    shared_data: str | None,
    sample: int,
    seed: int,
) -> JobInput:
    """The questions, corpus and runs one RAG job's plan renders (module docstring)."""
    queries, chosen, count, corpus, questions_source = job_questions(
        config, dataset, target, results, shared_data
    )
    picked = set(sample_queries(list(chosen["query_id"].astype(str)), sample, seed))
    questions = chosen[chosen["query_id"].astype(str).isin(picked)]
    qids = list(questions["query_id"].astype(str))
    runs, real = {}, []
    for run in plan.rag_runs(config):
        path = Path(
            results, config["experiment"], "runs", run, f"{dataset}.{target['split']}.parquet"
        )
        if path.exists() and isinstance(corpus, str):
            table = read_table(path)
            runs[run] = table[table["query_id"].astype(str).isin(picked)]
            real.append(run)
    stand_ins = [r for r in plan.rag_runs(config) if r not in real]
    runs.update(sampled_runs(corpus, stand_ins, qids, int(target["top_k"]), seed))
    runs = {r: runs[r] for r in plan.rag_runs(config)}  # the job's run order
    passages = (
        (f"run files of {', '.join(real)}" if real else "")
        + ("; " if real and stand_ins else "")
        + (
            f"NOT retrieved for {', '.join(stand_ins)} (no run file yet): {target['top_k']} "
            f"passages per question sampled from "
            + ("the stand-in's corpus" if isinstance(corpus, pd.DataFrame) else str(corpus))
            + f" (seed {seed}; drawn independently per run, so the prefix two runs' prompts "
            "share is a lower bound, and none is cached)"
            if stand_ins
            else ""
        )
    )
    return JobInput(
        queries,
        questions,
        count,
        corpus,
        runs,
        f"questions: {questions_source}, {len(qids):,} rendered; passages: {passages}",
    )


# --- the plan ------------------------------------------------------------------------------


def generator_identity(generator: Mapping[str, Any]) -> ModelIdentity:
    """The engine identity a RAG job with ``generator`` (its params) keys its cache with: the
    engine resolved for this machine, as :func:`~utilann.llm.batch.open_generator` does."""
    from utilann.llm.backends import resolve

    return ModelIdentity.resolve(resolve(EngineSpec.from_job(generator)))


def plan_job(
    config: Mapping[str, Any],
    name: str,
    target: Mapping[str, Any],
    job: JobInput,
    tokenizer: Any,
    identity: ModelIdentity,
    prefix: PrefixCache,
) -> list[Planned]:
    """The planned calls of one RAG job, weighted by the questions each rendered one stands
    for; ``identity`` is the generator's engine in cache keys (:func:`generator_identity`)."""
    generator = plan.rag_generator_params(config, target)
    template = load_template_id(target["prompt"])
    qids = list(job.questions["query_id"].astype(str))
    prompts = run_prompts(job.runs, job.queries, job.corpus, template, target["top_k"], qids)
    tagged = question_major(prompts, qids)
    requests = llm_requests([r for _, r in tagged], template.fingerprint, generator["sampling"])
    gold = dict(zip(job.questions["query_id"].astype(str), job.questions["answers"]))
    max_len = generator["engine"].get("max_model_len")
    cache = GenerationCache(config["llm"]["cache_dir"], None)
    planner = PlanningGenerator(
        cache,
        identity,
        ChatRenderer(tokenizer, generator["chat_template_kwargs"]),
        int(max_len) if max_len else None,
    )
    for (_, prompt), request in zip(tagged, requests, strict=True):
        planner.note(request, name, str(gold[prompt.query_id][0]))
    try:
        planner.generate(requests, f"plan {name}")
    finally:
        cache.close()
    return planned_calls(planner.records, job.question_count / len(qids), prefix)


def plan_rag(
    config: Mapping[str, Any],
    throughput: Throughput | None,
    *,
    results: str | Path = "results",
    shared_data: str | None = None,
    sample: int | None = None,
    annotator_tokenizer: str | None = None,
) -> RagPlan | None:
    """The RAG rows of the plan of ``config`` (None: no RAG target, or ``plan.rag.enabled``
    off). ``annotator_tokenizer`` (``--tokenizer`` / ``plan.tokenizer``) also counts for a
    generator that is the annotation LLM."""
    from utilann.cluster import vllm_gpus

    settings = config["plan"]
    targets = plan.rag_targets(config)
    if not settings["rag"]["enabled"] or not targets:
        return None
    gpus = vllm_gpus(
        config["rag"]["generator"]["resources"], config["llm"]["engine"], "rag.generator.resources"
    )
    engines: dict[str, tuple[Any, str, ModelIdentity]] = {}  # per generator model
    rows, every, sources = [], [], {}
    for (dataset, split), target in targets.items():
        name = f"rag {dataset}/{split}"
        generator = plan.rag_generator_params(config, target)
        model = generator["model"]
        try:
            if model not in engines:
                override = settings["rag"]["tokenizers"].get(model) or (
                    annotator_tokenizer if model == config["llm"]["model"] else None
                )
                engines[model] = (
                    *load_tokenizer(config, model, generator["path"], override),
                    generator_identity(generator),
                )
            job = job_input(
                config,
                dataset,
                target,
                results,
                shared_data,
                int(sample or settings["sample_queries"]),
                int(settings["seed"]),
            )
        except FileNotFoundError as err:  # its data or tokenizer is not there yet
            log.warning("%s is not planned: %s", name, err)
            sources[name] = f"NOT PLANNED (no row, not in the totals): {err}"
            continue
        tokenizer, tok_source, identity = engines[model]
        prefix = PrefixCache(
            block_size(generator["engine"], gpus),
            bool(generator["engine"].get("enable_prefix_caching", True)),
        )
        calls = plan_job(config, name, target, job, tokenizer, identity, prefix)
        rows.append(plan_row(name, calls, throughput, gpus))
        every += calls
        sources[name] = (
            f"{model}, top {target['top_k']}, prompt {target['prompt']}, "
            f"{len(job.runs)} runs x {job.question_count:,} questions; {job.source}; "
            f"tokenizer: {tok_source}"
        )
    if rows:
        rows.append(plan_row("rag total", every, throughput, gpus))
    sources["rag answers"] = (
        "calls not in the cache are assumed to answer the question's first gold answer "
        "(capped at max_tokens); cached counts the LLM cache (the rag jobs' keys) and the "
        "repeats of a prompt two runs share (asked once, as in the job)"
    )
    if throughput is not None:
        sources["rag throughput"] = (
            f"the annotation's throughput for every generator ({throughput.describe()}): a "
            "stand-in for a generator other than the model it was measured or stated for; "
            f"GPU-hours x {max(gpus, 1)} (rag.generator.resources.gpu)"
        )
    table = pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()
    return RagPlan(table, sources)
