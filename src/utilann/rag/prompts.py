"""RAG prompts from the top-k passages of a retrieval run (paper 4.4).

The retrieved passages go straight to the generator, in rank order and without a reranker.
Everything up to the LLM call is pure data (:func:`build_requests`), so prompt building is
tested without a model; :mod:`utilann.rag.job` sends the prompts through the shared cached
generation loop (:mod:`utilann.llm.batch`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from utilann import schemas
from utilann.llm.engine import Message
from utilann.llm.templates import PromptTemplate
from utilann.passages import format_passage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationRequest:
    """The prompt of one query and the passages it shows."""

    query_id: str
    doc_ids: tuple[str, ...]
    messages: list[Message]


def top_k(run: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` best-ranked rows of each query of a RUN table, in rank order."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    ordered = run.sort_values(["query_id", "rank"], kind="stable")
    return ordered.groupby("query_id", sort=False).head(k).reset_index(drop=True)


def read_corpus_rows(
    corpus: str | os.PathLike[str] | pd.DataFrame, doc_ids: Iterable[str]
) -> pd.DataFrame:
    """CORPUS rows (doc_id, title, text) of ``doc_ids`` from a CORPUS table or shard directory.

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
    missing = sorted(set(wanted) - set(rows["doc_id"].astype(str)))
    if missing:
        raise KeyError(
            f"{len(missing)} retrieved passage(s) are not in the corpus (e.g. {missing[:3]}): "
            "is the run from another dataset?"
        )
    return rows[schemas.CORPUS.names].reset_index(drop=True)


def load_passages(
    corpus: str | os.PathLike[str] | pd.DataFrame, doc_ids: Iterable[str], titles: bool = True
) -> dict[str, str]:
    """Formatted passages (``title text``; the text alone without ``titles``) of ``doc_ids``
    (:func:`read_corpus_rows`)."""
    rows = read_corpus_rows(corpus, doc_ids)
    return {
        str(doc_id): format_passage(title if titles else None, text)
        for doc_id, title, text in rows.itertuples(index=False)
    }


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
        messages = template.render(str(texts[qid]), [passages[d] for d in doc_ids])
        requests.append(GenerationRequest(query_id=qid, doc_ids=doc_ids, messages=messages))
    if len(requests) < len(wanted):
        log.warning(
            "%d of %d queries have no retrieved passage and are not asked",
            len(wanted) - len(requests),
            len(wanted),
        )
    return requests
