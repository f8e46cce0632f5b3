"""The query-generation LLM step: one question per sampled passage, through the shared loop.

Each passage is shown after the few-shot examples with the ``query_gen`` template; requests go
through :class:`~utilann.llm.batch.CachedGenerator` (content-keyed cache, chunks committed as
they finish, an engine started only on a miss), so a killed job resumes where it stopped and
a rerun makes no call. The completion is cleaned (:func:`~utilann.newcorpus.filters.
clean_query`) and length-checked; the optional self-check then asks the same engine, in the
same job, whether the source passage answers each surviving question (``query_check``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from utilann.annotate.parse import parse_answer
from utilann.llm.batch import CachedGenerator, Request
from utilann.llm.templates import PromptTemplate
from utilann.newcorpus.examples import Example
from utilann.newcorpus.filters import KEPT, clean_query, length_status, read_yes_no
from utilann.passages import format_passage
from utilann.schemas import GENERATED_QUERIES

GENERATED = "generated"
"""``origin`` of a query the LLM wrote."""
ID_PREFIX = "gen-"


def query_id(doc_id: str) -> str:
    """The id of the question generated for passage ``doc_id`` (one question per passage)."""
    return f"{ID_PREFIX}{doc_id}"


@dataclass(frozen=True)
class QueryGenSettings:
    """Everything that decides the prompts sent and how completions become candidates.

    Attributes:
        template: the ``query_gen`` template; check_template: ``query_check`` (None = no
            self-check).
        sampling: decoding of the generation; check_sampling: of the self-check.
        passage_max_words: passages cut to this many words in both prompts.
        min_words, max_words: the length filter.
    """

    template: PromptTemplate
    sampling: Mapping[str, Any]
    passage_max_words: int
    min_words: int
    max_words: int
    check_template: PromptTemplate | None = None
    check_sampling: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for template in filter(None, (self.template, self.check_template)):
            if template.answer_format != "text":
                raise ValueError(f"prompt template {template.id} must ask for a text answer")
        if self.check_template is not None and "query" not in self.check_template.fields:
            raise ValueError(f"prompt template {self.check_template.id} must show {{query}}")


def _requests(
    template: PromptTemplate,
    sampling: Mapping[str, Any],
    items: Sequence[tuple[str, str]],
    examples: Sequence[tuple[str, str]] = (),
) -> list[Request]:
    """One request per ``(query, passage)``; the query is empty for generation."""
    return [
        Request(template.fingerprint, template.render(q, [p], examples=examples), sampling)
        for q, p in items
    ]


def generate_queries(
    passages: pd.DataFrame,
    examples: Sequence[Example],
    settings: QueryGenSettings,
    generator: CachedGenerator,
) -> pd.DataFrame:
    """GENERATED_QUERIES rows for ``passages`` (CORPUS rows), one per passage, in their order.

    ``status`` is ``kept`` or the shard-level filter that removed the candidate (``empty``,
    ``too_short``, ``too_long``, ``self_check``); duplicates and the round trip come later.
    """
    shown = [
        format_passage(t, x, settings.passage_max_words)
        for t, x in zip(passages["title"], passages["text"], strict=True)
    ]
    shots = [(e.passage, e.query) for e in examples]
    requests = _requests(settings.template, settings.sampling, [("", p) for p in shown], shots)
    outcomes = generator.generate(requests, desc="query_gen")
    rows = []
    for doc_id, outcome in zip(passages["doc_id"].astype(str), outcomes, strict=True):
        g = outcome.generation
        text = clean_query(parse_answer(g.text, g.finish_reason).text)
        rows.append(
            {
                "query_id": query_id(doc_id),
                "origin": GENERATED,
                "source_doc_id": doc_id,
                "text": text,
                "raw_text": g.text,
                "status": length_status(text, settings.min_words, settings.max_words),
                "self_check": None,
                "round_trip_rank": None,
                "cache_key": outcome.key,
                "from_cache": outcome.from_cache,
                "prompt_tokens": g.prompt_tokens,
                "output_tokens": g.output_tokens,
                "gen_seconds": outcome.gen_seconds,
            }
        )
    table = pd.DataFrame(rows, columns=GENERATED_QUERIES.names)
    if settings.check_template is not None:
        self_check(table, shown, settings, generator)
    table["round_trip_rank"] = table["round_trip_rank"].astype("Int32")
    return table


def self_check(
    table: pd.DataFrame,
    shown: Sequence[str],
    settings: QueryGenSettings,
    generator: CachedGenerator,
) -> None:
    """Ask whether each kept candidate's passage answers it; a "no" removes it (in place).

    A reply that is neither yes nor no keeps the query (the check is a filter, not a judge of
    last resort); the raw reply is stored in ``self_check`` either way.
    """
    assert settings.check_template is not None and settings.check_sampling is not None
    todo = [i for i in range(len(table)) if table.at[i, "status"] == KEPT]
    requests = _requests(
        settings.check_template,
        settings.check_sampling,
        [(table.at[i, "text"], shown[i]) for i in todo],
    )
    for i, outcome in zip(todo, generator.generate(requests, desc="query_check"), strict=True):
        reply = outcome.generation.text
        table.at[i, "self_check"] = reply
        if read_yes_no(reply) is False:
            table.at[i, "status"] = "self_check"
