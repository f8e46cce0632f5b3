"""Answer queries from the top-k passages of a retrieval run (paper §4.4 / digest 6.3).

The retrieved passages go straight to the generator, in rank order and without a reranker.
Everything up to the LLM call is pure data (:func:`build_requests`), so prompt building is
tested without a model; :func:`generate` then works with any backend that has the
``chat(conversations, sampling) -> [output with .text]`` method of :class:`ChatBackend`
(``utilann.llm.VLLMChat`` in the pipeline, a stub in tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .. import schemas
from .prompts import PromptTemplate, format_passage

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


class ChatOutput(Protocol):
    """One generated answer."""

    text: str


class ChatBackend(Protocol):
    """What :func:`generate` needs from an LLM engine."""

    def chat(self, conversations: list[Conversation], sampling: dict) -> Sequence[ChatOutput]:
        """Answer each conversation (chat template applied by the backend), in order."""
        ...


@dataclass(frozen=True)
class GenerationRequest:
    """The prompt of one query and the passages it shows."""

    query_id: str
    doc_ids: tuple[str, ...]
    messages: Conversation


def top_k(run: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` best-ranked rows of each query of a RUN table, in rank order."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    ordered = run.sort_values(["query_id", "rank"], kind="stable")
    return ordered.groupby("query_id", sort=False).head(k).reset_index(drop=True)


def load_passages(
    corpus: str | os.PathLike[str] | pd.DataFrame, doc_ids: Iterable[str]
) -> dict[str, str]:
    """Formatted passages (``title text``) of ``doc_ids`` from a CORPUS table or shard directory.

    Only the requested rows are read from the shards, so an 8.8 M-passage corpus is never
    loaded whole. A requested id missing from the corpus means the run and the corpus do not
    belong together, and raises.
    """
    wanted = sorted(set(map(str, doc_ids)))
    if isinstance(corpus, pd.DataFrame):
        rows = corpus[corpus["doc_id"].astype(str).isin(wanted)]
    else:
        table = ds.dataset(os.fspath(corpus), format="parquet").to_table(
            columns=schemas.CORPUS.names, filter=pc.field("doc_id").isin(wanted)
        )
        rows = table.to_pandas()
    passages = {
        str(doc_id): format_passage(title, text)
        for doc_id, title, text in rows[schemas.CORPUS.names].itertuples(index=False)
    }
    missing = [d for d in wanted if d not in passages]
    if missing:
        raise KeyError(
            f"{len(missing)} retrieved passage(s) are not in the corpus (e.g. {missing[:3]}): "
            "is the run from another dataset?"
        )
    return passages


def build_requests(
    run: pd.DataFrame,
    queries: pd.DataFrame,
    passages: Mapping[str, str],
    template: PromptTemplate,
    k: int,
    query_ids: Iterable[str] | None = None,
) -> list[GenerationRequest]:
    """One prompt per query from its top-``k`` passages.

    Args:
        run: RUN table (query_id, doc_id, rank, score).
        queries: QUERIES table (query_id, text).
        passages: formatted passage text by doc id (:func:`load_passages`).
        template: the conversation to fill.
        k: passages per prompt.
        query_ids: the queries to answer (e.g. those with gold answers); None = every query
            of the run. Queries the run retrieved nothing for are skipped (logged); the answer
            metrics then score them as empty answers.
    """
    texts = dict(zip(queries["query_id"].astype(str), queries["text"]))
    best = top_k(run, k)
    lists = best.groupby("query_id", sort=False)["doc_id"].agg(list)
    lists.index = lists.index.astype(str)
    wanted = (
        list(dict.fromkeys(map(str, query_ids))) if query_ids is not None else list(lists.index)
    )
    unknown = [q for q in wanted if q not in texts]
    if unknown:
        raise KeyError(
            f"{len(unknown)} query id(s) have no text in the queries table (e.g. {unknown[:3]})"
        )
    requests = []
    for qid in wanted:
        if qid not in lists.index:
            continue
        doc_ids = tuple(map(str, lists[qid]))
        messages = template.render(texts[qid], [passages[d] for d in doc_ids])
        requests.append(GenerationRequest(query_id=qid, doc_ids=doc_ids, messages=messages))
    if len(requests) < len(wanted):
        log.warning(
            "%d of %d queries have no retrieved passage and are not asked",
            len(wanted) - len(requests),
            len(wanted),
        )
    return requests


def prompt_key(messages: Conversation, sampling: Mapping, model: str) -> str:
    """Content key of one LLM call: model, sampling parameters and the exact conversation."""
    payload = json.dumps([model, dict(sampling), messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def clean_prediction(raw: str) -> str:
    """The answer that is scored: text after a reasoning block (``</think>``), stripped.

    Reasoning models (Qwen3) emit ``<think>...</think>`` before the answer; the authors keep
    only what follows it. Nothing else is removed, so the scores stay those of the raw answer.
    """
    return raw.rsplit("</think>", 1)[-1].strip()


def generate(
    llm: ChatBackend,
    requests: Sequence[GenerationRequest],
    sampling: Mapping,
    *,
    model: str,
    batch_size: int = 256,
    cache: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Answer every request; return a GENERATIONS table in request order.

    Args:
        llm: backend with a ``chat`` method.
        requests: prompts from :func:`build_requests`.
        sampling: generation parameters passed to the backend as is (e.g.
            ``{"temperature": 0.0, "max_tokens": 32}``).
        model: model name or path; part of the cache key only.
        batch_size: conversations per ``chat`` call; each batch is logged.
        cache: an earlier GENERATIONS table (a previous attempt, or another run whose top-k
            coincides); answers whose ``prompt_key`` matches are reused, not paid for again.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keys = [prompt_key(r.messages, sampling, model) for r in requests]
    answered: dict[str, str] = {}
    if cache is not None and len(cache):
        answered = dict(zip(cache["prompt_key"], cache["raw_output"]))
    first_of_key: dict[str, int] = {}  # identical prompts are asked once
    for i, key in enumerate(keys):
        if key not in answered:
            first_of_key.setdefault(key, i)
    todo = list(first_of_key.values())
    log.info(
        "%d prompts: %d to generate, the rest reused (cache or identical prompt)",
        len(requests),
        len(todo),
    )
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        outputs = llm.chat([requests[i].messages for i in batch], dict(sampling))
        if len(outputs) != len(batch):
            raise RuntimeError(f"the LLM returned {len(outputs)} outputs for {len(batch)} prompts")
        for i, output in zip(batch, outputs):
            answered[keys[i]] = output.text
        log.info("generated %d / %d", min(start + batch_size, len(todo)), len(todo))
    rows = [
        (r.query_id, list(r.doc_ids), clean_prediction(answered[key]), answered[key], key)
        for r, key in zip(requests, keys)
    ]
    return pd.DataFrame(rows, columns=schemas.GENERATIONS.names)
