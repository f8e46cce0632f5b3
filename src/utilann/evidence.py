"""What active selection reads beyond the annotation's labels: two display orders, confidence.

Two of the selectors of :mod:`utilann.selection` need LLM outputs that the annotation cascade
does not make (issue 12, item 3):

* **display orders** (rule ``annotate_orders``): RelSel is run again over each query's pool,
  the pool shuffled with each of two seeds (``position_policy: shuffled``,
  :func:`utilann.annotate.windows.relsel_windows`), so each passage is judged once per order.
  LLM judges prefer some positions (the paper's human positive sits at [1] for this reason,
  App. B.1); a query whose selection changes with the order alone is one whose judgement
  rests on position, not on the passages. Both passes go through one engine and the shared
  cache (a seed equal to the annotation's own order costs nothing).
* **judge confidence** (rule ``judge_confidence``): the annotator's log-probability of its
  own answer. The cascade's calls of the judged step (``annotation.selection.confidence.
  step``) are replayed through the cache with the annotation's exact settings (same keys: no
  generation), and each answer text is then scored as the assistant turn of its own prompt
  with the engine's ``score`` mode (vLLM prompt log-probabilities, as REPLUG's answer
  likelihoods, :meth:`utilann.llm.engine.VLLMChat.score`). The confidence of a query is the
  mean log-probability per answer token over its calls of that step. This is the probability
  the model gives the answer it wrote, re-tokenised from the text (a tokenisation of the
  text that differs from the generated ids is scored as the text's own); under greedy
  decoding (the annotation's ``temperature: 0``) it is the sequence's own score; under
  constrained decoding it is the *unconstrained* model's probability of the constrained
  answer. Only the vLLM backend returns log-probabilities.

Both jobs annotate only the selection population (the queries a human share is drawn from,
:func:`utilann.selection.population`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.annotate.cascade import Answered, Cascade
from utilann.annotate.job import AnnotationJob
from utilann.annotate.steps import strategy
from utilann.io import read_table, write_json, write_table
from utilann.llm.backends import resolve
from utilann.llm.batch import Request, open_generator
from utilann.llm.engine import PROMPT_TOO_LONG, SCORE_SAMPLING, continuation_logprobs
from utilann.selection import population

log = logging.getLogger(__name__)

Path = str | os.PathLike[str]
#: Bump when the evidence's algorithm changes (a params change of both rules).
CODE_VERSION = 1
ORDER_POLICY = "shuffled"


def population_pools(
    pool_paths: Sequence[Path], candidates_path: Path | None, origins: Sequence[str] | None
) -> pd.DataFrame:
    """The POOLS rows of the selection population's queries."""
    pools = pd.concat([read_table(p, schemas.POOLS.names) for p in pool_paths], ignore_index=True)
    candidates = read_table(candidates_path) if candidates_path else None
    wanted = set(population(pools, candidates, origins)["query_id"])
    return pools[pools["query_id"].astype(str).isin(wanted)].reset_index(drop=True)


def annotate_orders(
    job: AnnotationJob,
    pools: pd.DataFrame,
    seeds: Sequence[int],
    out_labels: Sequence[Path],
    out_raw: Sequence[Path],
    manifest_path: Path,
) -> dict[str, Any]:
    """RelSel over ``pools`` once per display order (``seeds``); LABELS and RAW per order."""
    if len(set(seeds)) != len(seeds) or not len(seeds) == len(out_labels) == len(out_raw):
        raise ValueError(f"one output per distinct seed expected, got seeds {list(seeds)}")
    started = time.perf_counter()
    passes = {}
    with open_generator(job.engine_spec, job.cache_dir, job.writer, job.chunk_size) as gen:
        for seed, labels_path, raw_path in zip(seeds, out_labels, out_raw, strict=True):
            settings = replace(
                job, strategies=("relsel",), position_policy=ORDER_POLICY, seed=int(seed)
            ).settings()
            result = Cascade(settings, gen).run(pools)
            meta = {
                "model": job.model,
                **gen.identity.run_metadata(),
                "sampling": settings.sampling,
                "prompts": {"version": job.prompts["version"], "dir": job.prompts.get("dir")},
                "strategies": ["relsel"],
                "window_size": settings.window_size,
                "position_policy": ORDER_POLICY,
                "seed": int(seed),
                "passage_max_words": settings.passage_max_words,
                "code_version": CODE_VERSION,
            }
            write_table(result.labels, labels_path, schemas.LABELS, meta)
            write_table(result.raw, raw_path, schemas.RAW, meta)
            passes[str(seed)] = result.stats["relsel"].as_dict()
        engine_started = gen.started
    manifest = {
        "model": job.model,
        **gen.identity.run_metadata(),
        "queries": int(pools["query_id"].nunique()),
        "seeds": [int(s) for s in seeds],
        "passes": passes,
        "engine_started": engine_started,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(manifest, manifest_path)
    return manifest


def score_requests(answered: Iterable[Answered], step: str) -> tuple[list[Request], list[str]]:
    """A scoring request per call of ``step`` with a non-empty answer: the call's own
    conversation plus its answer as the assistant turn; and each request's query."""
    requests, queries = [], []
    for a in answered:
        text = a.outcome.generation.text
        if a.call.step.name != step or not text.strip():
            continue
        request = a.call.request
        messages = [*request.messages, {"role": "assistant", "content": text}]
        requests.append(replace(request, messages=messages, sampling=SCORE_SAMPLING, mode="score"))
        queries.append(a.call.query_id)
    return requests, queries


def confidence_table(
    query_ids: Sequence[str],
    step: str,
    calls: Mapping[str, int],
    scored: Iterable[tuple[str, Sequence[float] | None]],
) -> pd.DataFrame:
    """CONFIDENCE rows: per query, the scored answers' tokens, summed and mean log-probability.

    Args:
        query_ids: the population (one row each, also for a query without a call).
        calls: calls of ``step`` per query.
        scored: ``(query_id, token log-probabilities)`` per scored answer (None: not scored,
            e.g. its prompt did not fit the context).
    """
    tokens: dict[str, int] = {}
    total: dict[str, float] = {}
    answers: dict[str, int] = {}
    for qid, logprobs in scored:
        if logprobs is None:
            continue
        answers[qid] = answers.get(qid, 0) + 1
        tokens[qid] = tokens.get(qid, 0) + len(logprobs)
        total[qid] = total.get(qid, 0.0) + float(sum(logprobs))
    rows = []
    for qid in query_ids:
        n = tokens.get(qid, 0)
        logprob = total.get(qid) if n else None
        rows.append(
            {
                "query_id": qid,
                "step": step,
                "calls": calls.get(qid, 0),
                "scored": answers.get(qid, 0),
                "answer_tokens": n,
                "logprob": logprob,
                "mean_logprob": logprob / n if n else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=schemas.CONFIDENCE.names)


def judge_confidence(
    job: AnnotationJob, pools: pd.DataFrame, step: str, out_path: Path
) -> dict[str, Any]:
    """The CONFIDENCE table of ``step``'s answers over ``pools`` (module docstring)."""
    if step not in job.strategies:
        raise ValueError(
            f"annotation.selection.confidence.step {step!r} is not one of annotation.strategies "
            f"{list(job.strategies)}: its answers are not part of the annotation"
        )
    strategy(step)
    spec = resolve(job.engine_spec)
    if spec.backend != "vllm":
        raise ValueError(
            f"judge confidence needs token log-probabilities, which only the vLLM backend "
            f"returns; this job resolved llm.backend {job.backend!r} to {spec.backend!r}"
        )
    settings = replace(job, strategies=(step,)).settings()
    with open_generator(spec, job.cache_dir, job.writer, job.chunk_size) as gen:
        result = Cascade(settings, gen).run(pools)  # from the cache: the annotation's calls
        replayed = gen.generated
        requests, owners = score_requests(result.answered, step)
        outcomes = gen.generate(requests, desc=f"{step} confidence")
        identity, scored_now = gen.identity, gen.generated - replayed
    answered = [a for a in result.answered if a.call.step.name == step]
    calls = pd.Series([a.call.query_id for a in answered], dtype=str).value_counts().to_dict()
    scores = [
        (
            qid,
            None
            if o.generation.finish_reason == PROMPT_TOO_LONG
            else continuation_logprobs(o.generation),
        )
        for qid, o in zip(owners, outcomes, strict=True)
    ]
    query_ids = sorted(pools["query_id"].astype(str).unique())
    table = confidence_table(query_ids, step, calls, scores)
    counts = {
        "queries": len(query_ids),
        "calls": len(answered),
        "scored": int(table["scored"].sum()),
        "without_score": int((table["scored"] == 0).sum()),
        "replayed_generations": replayed,
        "scoring_calls_made": scored_now,
    }
    if replayed:
        log.warning(
            "%d of the %s calls were not in the cache and were generated again: the "
            "annotation ran with other settings, or its prompts did not fit max_model_len",
            replayed,
            step,
        )
    meta = {
        "model": job.model,
        **identity.run_metadata(),
        "step": step,
        "sampling": dict(SCORE_SAMPLING),
        "annotation_sampling": settings.sampling,
        "code_version": CODE_VERSION,
        **counts,
    }
    write_table(table, out_path, schemas.CONFIDENCE, meta)
    log.info("judge confidence of %s: %s", step, counts)
    return counts
