"""One selection step over given windows of pools: the judge behind the Hybrid Test and the
audits.

The cascade (:mod:`utilann.annotate.cascade`) decides its own windows and reference answers;
a judge is handed both: the windows of each pool (pool indices in display order) and one
reference answer per pool. Each window is one call of ``step`` rendered with its template,
sent through the one cached generation loop, parsed by the step's answer format and merged
back per passage (:func:`~utilann.annotate.windows.merge_windows`). The result is a LABELS
table (``strategy`` = the step's name) plus the RAW rows of every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.annotate.cascade import (
    Answered,
    Call,
    QueryPool,
    StepStats,
    call_item,
    check_template,
    parse_call,
    raw_rows,
)
from utilann.annotate.steps import Step
from utilann.annotate.windows import merge_windows
from utilann.llm.batch import CachedGenerator, Request
from utilann.llm.templates import PromptTemplate


@dataclass
class Judgements:
    """The judge's LABELS rows (strategy = its step), RAW rows and call statistics."""

    labels: pd.DataFrame
    raw: pd.DataFrame
    stats: StepStats


def judge_windows(
    step: Step,
    template: PromptTemplate,
    pools: Sequence[QueryPool],
    windows: Mapping[str, Sequence[Sequence[int]]],
    answers: Mapping[str, str],
    generator: CachedGenerator,
    sampling: Callable[[int], Mapping[str, Any]],
    desc: str,
) -> Judgements:
    """Run selection ``step`` over ``windows[pool id]`` of every pool (module docstring).

    ``answers`` holds each pool's reference answer (read only when the step needs one);
    ``sampling(n)`` is the decoding of a call over ``n`` passages (a grammar over ``n`` ids
    under constrained decoding).
    """
    if step.answer_format != "selection":
        raise ValueError(f"a judge selects passages; step {step.name!r} is a {step.answer_format}")
    check_template(step, template)
    calls = []
    for q in pools:
        answer = answers.get(q.query_id, "") if step.needs_answer else ""
        for w, shown in enumerate(windows[q.query_id]):
            messages = template.render(q.query, [q.texts[i] for i in shown], answer)
            item = call_item(step, q.query_id, w)
            request = Request(template.fingerprint, messages, sampling(len(shown)), item=item)
            calls.append(Call(step, q.query_id, w, tuple(shown), request))
    outcomes = generator.generate([c.request for c in calls], desc=desc)
    answered = [Answered(c, o, parse_call(c, o)) for c, o in zip(calls, outcomes, strict=True)]
    stats = StepStats()
    chosen: dict[str, list[set[int]]] = {q.query_id: [] for q in pools}
    for a in answered:
        stats.add(a)
        chosen[a.call.query_id].append(set(a.picked))
    rows = []
    for q in pools:
        marks = merge_windows(windows[q.query_id], chosen[q.query_id])
        for i, (did, position, human) in enumerate(
            zip(q.doc_ids, q.positions, q.is_human, strict=True)
        ):
            rows.append(
                {
                    "query_id": q.query_id,
                    "doc_id": did,
                    "position": position,
                    "is_human_positive": human,
                    "strategy": step.name,
                    "selected": bool(marks.get(i)),
                    "rank": None,
                    "list_length": len(q.doc_ids),
                }
            )
    labels = pd.DataFrame(rows, columns=schemas.LABELS.names)
    labels["rank"] = labels["rank"].astype("Int32")
    return Judgements(labels, raw_rows(answered, {q.query_id: q for q in pools}), stats)
