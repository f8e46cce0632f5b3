"""Few-shot examples for query generation: (passage, question) pairs shown before the task.

They are data, not template wording: a user writes them in the config for their domain, or
takes them from any labelled dataset they have (a seeded sample of its judged queries, each
with one positive passage). The examples go into every prompt, so they are part of each
request's cache key: changing them regenerates the queries.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from utilann.passages import format_passage


@dataclass(frozen=True)
class Example:
    """One few-shot example: a passage (``title text``) and a question it answers."""

    passage: str
    query: str
    query_id: str | None = None
    doc_id: str | None = None


def written_examples(entries: Sequence[Mapping[str, Any]], max_words: int) -> list[Example]:
    """Examples written in the config (``{passage, query}`` each), passages cut to ``max_words``."""
    examples = []
    for i, entry in enumerate(entries):
        passage, query = str(entry.get("passage") or ""), str(entry.get("query") or "")
        if not passage.strip() or not query.strip():
            raise ValueError(f"newcorpus.examples.written[{i}] needs a non-empty passage and query")
        examples.append(Example(format_passage("", passage, max_words), query.strip()))
    return examples


def dataset_examples(
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    corpus: pd.DataFrame,
    count: int,
    seed: int,
    max_words: int,
) -> list[Example]:
    """``count`` judged queries of a labelled split, each with its first positive passage.

    The queries are a seeded sample of the sorted ids that have a positive judgement; the
    passage is the positive with the smallest id (deterministic), as the prompts show it.
    """
    positives = qrels[qrels["relevance"] > 0].astype({"query_id": str, "doc_id": str})
    by_query = positives.groupby("query_id")["doc_id"].min()
    ids = sorted(by_query.index)
    if len(ids) < count:
        raise ValueError(
            f"the example split has {len(ids)} queries with a positive, fewer than the "
            f"{count} examples asked for"
        )
    picked = sorted(random.Random(seed).sample(ids, count))
    texts = queries.astype({"query_id": str}).set_index("query_id")["text"]
    docs = corpus.astype({"doc_id": str}).set_index("doc_id")
    examples = []
    for qid in picked:
        doc = docs.loc[by_query[qid]]
        examples.append(
            Example(
                format_passage(doc["title"], doc["text"], max_words),
                str(texts[qid]).strip(),
                query_id=qid,
                doc_id=str(by_query[qid]),
            )
        )
    return examples


def examples_table(examples: Sequence[Example]) -> pd.DataFrame:
    """The FEW_SHOT table of ``examples`` (prompt order)."""
    return pd.DataFrame(
        [(e.query_id, e.doc_id, e.query, e.passage) for e in examples],
        columns=["query_id", "doc_id", "query", "passage"],
    )


def read_examples(table: pd.DataFrame) -> list[Example]:
    """Examples back from a FEW_SHOT table."""
    return [
        Example(r.passage, r.query, r.query_id, r.doc_id) for r in table.itertuples(index=False)
    ]
