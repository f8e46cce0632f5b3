"""Reference answers of the audits' UtilSel calls: the cascade's pseudo-answers, else one
written from the query's human positive.

UtilSel judges utility *for a reference answer* (paper 3.2). Where the cascade wrote a
pseudo-answer for a query (its ``answer`` RAW rows), the audit reuses it, so the judge reads
the hard negatives exactly as the cascade's UtilSel would have. A query without one (RelSel
selected nothing, the answer failed, or the annotation stage did not run) gets an answer
from the registry's pseudo-answer step over its human positive(s): the same template and the
same cached generation loop, only shown the passage a human judged relevant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from utilann.annotate.cascade import (
    Answered,
    Call,
    QueryPool,
    StepStats,
    check_template,
    parse_call,
    raw_rows,
)
from utilann.annotate.steps import get_step
from utilann.llm.batch import CachedGenerator, Request
from utilann.llm.templates import PromptTemplate

CASCADE = "cascade"
HUMAN_POSITIVE = "human_positive"
NONE = "none"
SOURCES = (CASCADE, HUMAN_POSITIVE, NONE)
"""Where a reference answer came from; ``none``: no cascade answer and no human positive."""


def cascade_answers(raw: pd.DataFrame | None) -> dict[str, str]:
    """The cascade's non-empty pseudo-answers by query (RAW rows of step ``answer``)."""
    if raw is None or raw.empty:
        return {}
    rows = raw[(raw["step"] == "answer") & raw["answer"].notna()]
    return {str(q): str(a) for q, a in zip(rows["query_id"], rows["answer"]) if str(a).strip()}


@dataclass
class References:
    """Reference answer and its source (:data:`SOURCES`) per pool id; RAW rows and stats of
    the answers generated here."""

    answers: dict[str, str]
    sources: dict[str, str]
    raw: pd.DataFrame
    stats: StepStats


def reference_answers(
    pools: Sequence[QueryPool],
    known: Mapping[str, str],
    template: PromptTemplate,
    generator: CachedGenerator,
    sampling: Callable[[int], Mapping[str, Any]],
) -> References:
    """``known`` answers, else one written from the human positive(s) by the pseudo-answer
    step (module docstring); a pool without either gets an empty answer (source ``none``)."""
    step = get_step("answer")
    check_template(step, template)
    answers = {q.query_id: known[q.query_id] for q in pools if q.query_id in known}
    sources = dict.fromkeys(answers, CASCADE)
    calls = []
    for q in pools:
        if q.query_id in answers:
            continue
        shown = tuple(i for i, human in enumerate(q.is_human) if human)
        if not shown:
            sources[q.query_id], answers[q.query_id] = NONE, ""
            continue
        messages = template.render(q.query, [q.texts[i] for i in shown])
        request = Request(
            template.fingerprint, messages, sampling(len(shown)), item=f"query {q.query_id}"
        )
        calls.append(Call(step, q.query_id, 0, shown, request))
    outcomes = generator.generate([c.request for c in calls], desc="audit reference answers")
    answered = [Answered(c, o, parse_call(c, o)) for c, o in zip(calls, outcomes, strict=True)]
    stats = StepStats()
    for a in answered:
        stats.add(a)
        answers[a.call.query_id] = a.parsed.text
        sources[a.call.query_id] = HUMAN_POSITIVE
    return References(answers, sources, raw_rows(answered, {q.query_id: q for q in pools}), stats)
