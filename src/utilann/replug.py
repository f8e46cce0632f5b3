"""The REPLUG baseline's labels (paper App. A.2, D.2): how useful each pool passage is to an LM
that has to produce the gold answer.

For a training query ``q`` with gold answer ``a`` and each passage ``d`` of its candidate pool,
the LM scores ``log P(a | q, d)``: the log-probability of ``a``'s tokens as the assistant's
reply to a RAG prompt that shows ``d`` and asks ``q`` (a packaged RAG template, ``sentence``
for MS MARCO's answers, ``short_answer`` for factoid ones: the answer is scored under the
prompt it would be generated with, as REPLUG scores the LM's continuation). Each score is one
forward pass with vLLM prompt logprobs (:meth:`utilann.llm.engine.VLLMChat.score`) through the
shared cached loop (:mod:`utilann.llm.batch`), so a rerun, a resumed job or another experiment
never scores the same (model, prompt, passage, answer) twice.

The training label is the distribution ``U = softmax_pool(score / temperature)``
(:func:`utility_distribution`), with ``score`` the summed log-likelihood or its mean per
answer token; it is computed from the stored log-likelihoods when a training set is built, so
the temperature and the score are run settings that cost no LLM call. The retriever then fits
``R = softmax`` of its own scores over the same list to ``U`` with ``KL(U || R)``
(:class:`utilann.train.losses.kl_div.KLDiv`), on the static pool (no refreshed retrieval,
unlike the original REPLUG), with the same backbone as the other runs.

Which answer: the first of a query's gold answers (MS MARCO QA's first answer, NQ's first
alias). Queries without one are not scored (their count is in the output's metadata); the
paper's REPLUG, too, trains only on the MS MARCO training queries that have an answer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from utilann import schemas
from utilann.io import read_table, write_table
from utilann.llm.batch import CachedGenerator, Request, open_generator
from utilann.llm.engine import PROMPT_TOO_LONG, SCORE_SAMPLING, EngineSpec, continuation_logprobs
from utilann.llm.templates import PromptTemplate, load_template_id
from utilann.passages import format_passage
from utilann.qa import load_answers

log = logging.getLogger(__name__)

Path = str | os.PathLike[str]
SCORES = ("sum", "mean")


@dataclass(frozen=True)
class Scored:
    """Which pool passage and which answer one scoring request is about."""

    query_id: str
    doc_id: str
    position: int
    answer: str


def gold_answer(answers: Sequence[str]) -> str | None:
    """The answer REPLUG scores: the first non-empty gold answer, stripped (None if none)."""
    for answer in answers:
        if str(answer).strip():
            return str(answer).strip()
    return None


def score_requests(
    pools: pd.DataFrame, answers: Mapping[str, str], template: PromptTemplate
) -> tuple[list[Request], list[Scored]]:
    """One scoring request per pool passage of every query with a gold answer.

    The conversation is ``template`` rendered for the query over that single passage, plus the
    answer as the assistant turn whose log-probability is wanted.
    """
    requests, about = [], []
    ordered = pools.sort_values(["query_id", "position"], kind="stable")
    for r in ordered.itertuples(index=False):
        answer = answers.get(str(r.query_id))
        if answer is None:
            continue
        messages = template.render(str(r.query), [format_passage(r.title, r.text)])
        messages.append({"role": "assistant", "content": answer})
        item = f"query {r.query_id} passage {r.doc_id}"
        requests.append(Request(template.fingerprint, messages, SCORE_SAMPLING, "score", item))
        about.append(Scored(str(r.query_id), str(r.doc_id), int(r.position), answer))
    return requests, about


def score_table(about: Sequence[Scored], llm: CachedGenerator, requests: Sequence[Request]):
    """Score ``requests`` through the cached loop; a REPLUG_SCORES frame (and the too-long
    count: such prompts get no score)."""
    outcomes = llm.generate(requests, desc="replug scores")
    rows, too_long = [], 0
    for a, outcome in zip(about, outcomes, strict=True):
        if outcome.generation.finish_reason == PROMPT_TOO_LONG:
            too_long += 1
            continue
        logprobs = continuation_logprobs(outcome.generation)
        rows.append(
            (a.query_id, a.doc_id, a.position, a.answer, len(logprobs), sum(logprobs), outcome.key)
        )
    return pd.DataFrame(rows, columns=schemas.REPLUG_SCORES.names), too_long


def read_gold_answers(
    answers_path: Path, answers_format: str | None, queries_path: Path
) -> dict[str, str]:
    """``{query_id: answer}``: the dataset's ingested ANSWERS table (format None) or a gold
    answer file of ``answers_format`` (:func:`utilann.qa.load_answers`)."""
    if not os.path.exists(answers_path):
        raise FileNotFoundError(
            f"gold answers of the training queries not found at {answers_path} (config "
            "replug.answers): REPLUG scores the gold answer, so put the file there (for MS "
            "MARCO, the QA v2.1 train JSON, format msmarco) or point replug.answers at it"
        )
    table = (
        load_answers(answers_path, answers_format, read_table(queries_path))
        if answers_format
        else read_table(answers_path)
    )
    chosen = {str(q): gold_answer(list(a)) for q, a in zip(table["query_id"], table["answers"])}
    return {q: a for q, a in chosen.items() if a is not None}


def score_pool_shard(
    *,
    pools_path: Path,
    answers_path: Path,
    answers_format: str | None,
    queries_path: Path,
    scorer: Mapping[str, Any],
    prompt: str,
    chunk_size: int,
    cache_dir: Path,
    cache_writer: str,
    code_version: int,
    out_path: Path,
) -> dict[str, int]:
    """Score every passage of one pool shard for the queries with a gold answer (rule
    ``replug_score``); write REPLUG_SCORES and return the counts.

    ``scorer``: ``model`` (identity in cache keys), ``path`` (what vLLM loads), ``engine``,
    ``env``, ``chat_template_kwargs`` and ``prompt_too_long`` (:func:`utilann.plan.llm_job`).
    """
    pools = read_table(pools_path)
    answers = read_gold_answers(answers_path, answers_format, queries_path)
    template = load_template_id(prompt)
    requests, about = score_requests(pools, answers, template)
    queries = pools["query_id"].astype(str).nunique()
    scored_queries = len({a.query_id for a in about})
    log.info(
        "%d pool queries, %d with a gold answer: %d passages to score with %s",
        queries,
        scored_queries,
        len(requests),
        template.id,
    )
    spec = EngineSpec(
        scorer["model"],
        scorer["path"],
        scorer["engine"],
        scorer["env"],
        scorer["chat_template_kwargs"],
        prompt_too_long=scorer["prompt_too_long"],
    )
    with open_generator(spec, cache_dir, cache_writer, chunk_size) as llm:
        table, too_long = score_table(about, llm, requests)
    if too_long:
        log.warning(
            "%d passage prompts exceed max_model_len and have no score (utility 0)", too_long
        )
    counts = {
        "pool_queries": queries,
        "scored_queries": scored_queries,
        "queries_without_answer": queries - scored_queries,
        "scored_passages": len(table),
        "too_long": too_long,
        "generated": llm.generated,
    }
    meta = {
        "model": scorer["model"],
        "model_path": scorer["path"],
        **llm.identity.run_metadata(),
        "engine": scorer["engine"],
        "prompt": {"id": template.id, "sha256": template.sha256},
        "sampling": dict(SCORE_SAMPLING),
        "code_version": code_version,
        **counts,
    }
    write_table(table, out_path, schemas.REPLUG_SCORES, meta)
    log.info(
        "%d passages scored (%d generated, the rest from the cache) in %.1f s of engine time",
        len(table),
        llm.generated,
        llm.engine_seconds,
    )
    return counts


def utility_distribution(scores: pd.DataFrame, temperature: float, score: str) -> pd.DataFrame:
    """``U(d) = softmax over the query's scored passages of score(d) / temperature``.

    Args:
        scores: REPLUG_SCORES rows (one or several shards).
        temperature: > 0; 1 with ``score="sum"`` makes ``U`` proportional to ``P(a | q, d)``.
        score: ``sum`` (log-likelihood of the answer) or ``mean`` (per answer token).

    Returns:
        (query_id, doc_id, utility), each query's utilities summing to 1.
    """
    if score not in SCORES:
        raise ValueError(f"replug score must be one of {SCORES}, got {score!r}")
    if not temperature > 0:
        raise ValueError(f"replug temperature must be > 0, got {temperature}")
    frame = scores.astype({"query_id": str, "doc_id": str})
    value = frame["logprob"].astype(float)
    if score == "mean":
        value = value / frame["answer_tokens"].astype(float)
    logits = value / temperature
    shifted = logits - logits.groupby(frame["query_id"]).transform("max")
    weights = np.exp(shifted)
    utility = weights / weights.groupby(frame["query_id"]).transform("sum")
    return pd.DataFrame(
        {"query_id": frame["query_id"], "doc_id": frame["doc_id"], "utility": utility}
    ).reset_index(drop=True)
