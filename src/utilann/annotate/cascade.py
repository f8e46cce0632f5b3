"""The annotation cascade over one pool shard, driven by the step registry.

:mod:`utilann.annotate.steps` says which steps a set of strategies needs and in which batches
they run (RelSel; then the pseudo-answer; then UtilSel and UtilRank together). For each batch
the cascade renders every query's prompts (query-major, steps in registry order), sends them
through the one cached generation loop (:class:`~utilann.llm.batch.CachedGenerator`: cache
lookups, chunked generation with per-chunk commits, an engine started only on a miss), parses
each answer by its step's answer format and hands the results to the next batch.

Cascade rules (paper 3.2): UtilSel and UtilRank see only the RelSel-selected passages, in the
order they were shown to RelSel; a query where RelSel selects nothing gets no pseudo-answer
and no utility call, and simply has no positive. A failed pseudo-answer is passed on as an
empty reference answer (the original code did the same when its answer was missing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from utilann.annotate import steps as registry
from utilann.annotate.parse import STATUSES, ParseResult, parse_output
from utilann.annotate.steps import Step
from utilann.annotate.windows import merge_windows, relsel_windows
from utilann.llm.batch import CachedGenerator, Outcome, Request
from utilann.llm.grammar import DECODING_MODES, constrained
from utilann.llm.templates import PromptTemplate
from utilann.passages import format_passage
from utilann.schemas import LABELS


@dataclass(frozen=True)
class CascadeSettings:
    """Everything that decides which prompts are sent and how outputs become labels.

    ``sampling`` goes to the engine as is (``None`` values removed beforehand by the caller);
    ``templates`` holds one template per step that runs (:attr:`steps`); ``decoding`` says,
    per step, ``free`` (the paper's) or ``constrained`` (a grammar of the template's answer
    format over the passages shown, :mod:`utilann.llm.grammar`); unnamed steps are free.
    """

    sampling: Mapping[str, Any]
    templates: Mapping[str, PromptTemplate]
    strategies: Sequence[str] = field(default_factory=registry.strategies)
    window_size: int = 16
    position_policy: str = "fixed_first"
    seed: int = 0
    passage_max_words: int = 300
    decoding: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.decoding.items() if v not in DECODING_MODES}
        if bad:
            raise ValueError(f"decoding must be one of {DECODING_MODES} per step, got {bad}")
        if not self.strategies:
            raise ValueError(f"strategies must be a non-empty subset of {registry.strategies()}")
        for step in self.steps:  # also rejects unknown strategies
            template = self.templates.get(step)
            if template is None:
                raise ValueError(f"no prompt template for step {step!r}")
            check_template(registry.get_step(step), template)

    @property
    def steps(self) -> tuple[str, ...]:
        return registry.cascade_steps(self.strategies)

    @property
    def constrained(self) -> bool:
        """Whether some step decodes under a grammar (the engine then needs its backend)."""
        return any(self.decoding.get(step) == "constrained" for step in self.steps)

    def sampling_for(self, step: str, shown: int) -> Mapping[str, Any]:
        """The sampling of one call of ``step`` over ``shown`` passages."""
        if self.decoding.get(step) != "constrained":
            return self.sampling
        return constrained(self.sampling, self.templates[step].answer_syntax, shown)


def check_template(step: Step, template: PromptTemplate) -> None:
    """A template must ask for its step's answer format and use only inputs the step has."""
    if template.answer_format != step.answer_format:
        raise ValueError(
            f"prompt template {template.id} asks for a {template.answer_format} answer, "
            f"step {step.name!r} parses a {step.answer_format}"
        )
    if "answer" in template.fields and not step.needs_answer:
        raise ValueError(
            f"prompt template {template.id} uses {{answer}}, but step {step.name!r} runs "
            "before there is a pseudo-answer"
        )


@dataclass(frozen=True)
class QueryPool:
    """One query's candidate pool in pool order (texts already truncated)."""

    query_id: str
    query: str
    doc_ids: tuple[str, ...]
    positions: tuple[int, ...]
    is_human: tuple[bool, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    """One LLM call of the cascade: which step, query, window and pool passages it shows."""

    step: Step
    query_id: str
    window: int
    shown: tuple[int, ...]
    request: Request


@dataclass(frozen=True)
class Answered:
    """A call with its generation and what was parsed from it."""

    call: Call
    outcome: Outcome
    parsed: ParseResult

    @property
    def picked(self) -> tuple[int, ...]:
        """The selected or ranked passages as pool indices, in answer order."""
        return tuple(self.call.shown[i - 1] for i in self.parsed.ids)


@dataclass
class StepStats:
    """Per-step counts for the manifest and the report."""

    calls: int = 0
    generated: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    gen_seconds: float = 0.0
    parse: Counter = field(default_factory=Counter)
    issues: Counter = field(default_factory=Counter)

    def add(self, answered: Answered) -> None:
        o = answered.outcome
        self.calls += 1
        self.generated += not o.from_cache
        self.cached += o.from_cache
        self.prompt_tokens += o.generation.prompt_tokens
        self.output_tokens += o.generation.output_tokens
        self.gen_seconds += o.gen_seconds
        self.parse[answered.parsed.status] += 1
        self.issues.update(answered.parsed.issues)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "generated": self.generated,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "gen_seconds": round(self.gen_seconds, 3),
            "parse": {s: self.parse.get(s, 0) for s in STATUSES},
            "issues": dict(sorted(self.issues.items())),
        }


@dataclass
class ShardResult:
    """Labels (LABELS schema), raw outputs (RAW schema) and per-step statistics of a shard;
    ``answered`` keeps every call with its request (what :mod:`utilann.evidence` scores)."""

    labels: pd.DataFrame
    raw: pd.DataFrame
    stats: dict[str, StepStats]
    queries: dict[str, int]
    answered: list[Answered] = field(default_factory=list)


def group_pools(pools: pd.DataFrame, passage_max_words: int) -> list[QueryPool]:
    """Split a POOLS table into per-query pools, in first-appearance order of the queries."""
    ordered = pools.sort_values(["query_id", "position"], kind="stable")
    first_seen = {qid: i for i, qid in enumerate(dict.fromkeys(pools["query_id"]))}
    groups = []
    for qid, rows in ordered.groupby("query_id", sort=False):
        groups.append(
            QueryPool(
                query_id=str(qid),
                query=str(rows["query"].iloc[0]),
                doc_ids=tuple(rows["doc_id"].astype(str)),
                positions=tuple(int(p) for p in rows["position"]),
                is_human=tuple(bool(h) for h in rows["is_human_positive"]),
                texts=tuple(
                    format_passage(t, x, passage_max_words)
                    for t, x in zip(rows["title"], rows["text"], strict=True)
                ),
            )
        )
    return sorted(groups, key=lambda g: first_seen[g.query_id])


class Cascade:
    """Runs the cascade for one shard through a :class:`CachedGenerator`."""

    def __init__(self, settings: CascadeSettings, generator: CachedGenerator) -> None:
        self.settings = settings
        self.generator = generator
        self.stats = {step: StepStats() for step in settings.steps}
        self._windows: dict[str, list[list[int]]] = {}
        self._subsets: dict[str, list[int]] = {}
        self._answers: dict[str, str] = {}
        # per strategy step and query: pool index -> selected (bool) or 1-based rank (int)
        self._marks: dict[str, dict[str, dict[int, bool | int]]] = {}

    # -- requests ---------------------------------------------------------------------------

    def _calls(self, step: Step, pool: QueryPool) -> list[Call]:
        """The calls ``step`` makes for one query (none without the inputs it needs)."""
        qid = pool.query_id
        if step.passages == "window":
            shows = list(enumerate(self._windows[qid]))
        elif self._subsets.get(qid):
            shows = [(0, self._subsets[qid])]
        else:
            return []  # RelSel selected nothing: no later step for this query
        template = self.settings.templates[step.name]
        answer = self._answers.get(qid, "") if step.needs_answer else ""
        return [
            Call(
                step,
                qid,
                window,
                tuple(shown),
                Request(
                    template.fingerprint,
                    template.render(pool.query, [pool.texts[i] for i in shown], answer),
                    self.settings.sampling_for(step.name, len(shown)),
                    item=call_item(step, qid, window),
                ),
            )
            for window, shown in shows
        ]

    # -- results ----------------------------------------------------------------------------

    def _collect(self, step: Step, answered: Sequence[Answered], queries: Sequence[str]) -> None:
        """Keep what later steps and the label rows need from ``step``'s answers."""
        if step.answer_format == "text":
            for a in answered:
                self._answers[a.call.query_id] = a.parsed.text
            return
        marks: dict[str, dict[int, bool | int]] = {}
        if step.passages == "window":
            chosen: dict[str, list[set[int]]] = {qid: [] for qid in queries}
            for a in answered:  # windows come back in order, per query
                chosen[a.call.query_id].append(set(a.picked))
            for qid in queries:
                marks[qid] = dict(merge_windows(self._windows[qid], chosen[qid]))
        elif step.answer_format == "ranking":
            for a in answered:
                marks[a.call.query_id] = {i: r for r, i in enumerate(a.picked, start=1)}
        else:
            for a in answered:
                marks[a.call.query_id] = dict.fromkeys(a.picked, True)
        self._marks[step.name] = marks
        if step.provides == "subset":  # in the order the passages were shown
            self._subsets = {
                qid: [i for i, chosen in marks.get(qid, {}).items() if chosen] for qid in queries
            }

    def run(self, pools: pd.DataFrame) -> ShardResult:
        """Annotate every query of ``pools`` (POOLS schema)."""
        s = self.settings
        queries = group_pools(pools, s.passage_max_words)
        qids = [q.query_id for q in queries]
        if any(registry.get_step(name).passages == "window" for name in s.steps):
            self._windows = {
                q.query_id: relsel_windows(
                    q.is_human, s.window_size, s.position_policy, s.seed, q.query_id
                )
                for q in queries
            }
        answered: list[Answered] = []
        for batch in registry.levels(s.steps):
            calls = [call for q in queries for step in batch for call in self._calls(step, q)]
            outcomes = self.generator.generate(
                [c.request for c in calls], desc="+".join(step.name for step in batch)
            )
            done = [Answered(c, o, parse_call(c, o)) for c, o in zip(calls, outcomes, strict=True)]
            for a in done:
                self.stats[a.call.step.name].add(a)
            for step in batch:
                self._collect(step, [a for a in done if a.call.step is step], qids)
            answered += done

        with_subset = sum(1 for qid in qids if self._subsets.get(qid))
        counts = {
            "queries": len(queries),
            "passages": sum(len(q.doc_ids) for q in queries),
            "relsel_empty": len(queries) - with_subset,
        }
        pools_by_id = {q.query_id: q for q in queries}
        return ShardResult(
            self._label_rows(queries),
            raw_rows(answered, pools_by_id),
            self.stats,
            counts,
            answered,
        )

    def _label_rows(self, queries: Sequence[QueryPool]) -> pd.DataFrame:
        """One LABELS row per (query, pool passage, strategy); see ``utilann.schemas.LABELS``.

        ``selected`` of a ranking strategy's row says whether the ranker placed the passage.
        """
        strategies = [registry.strategy(name) for name in self.settings.strategies]
        rows = []
        for q in queries:
            n_sub = len(self._subsets.get(q.query_id, []))
            passages = zip(q.doc_ids, q.positions, q.is_human, strict=True)
            for i, (doc_id, position, human) in enumerate(passages):
                base = {
                    "query_id": q.query_id,
                    "doc_id": doc_id,
                    "position": position,
                    "is_human_positive": human,
                }
                for step in strategies:
                    mark = self._marks.get(step.name, {}).get(q.query_id, {}).get(i)
                    if step.answer_format == "ranking":
                        rank, selected = mark, mark is not None
                    else:
                        rank, selected = None, bool(mark)
                    rows.append(
                        {
                            **base,
                            "strategy": step.name,
                            "selected": selected,
                            "rank": rank,
                            "list_length": len(q.doc_ids) if step.passages == "window" else n_sub,
                        }
                    )
        labels = pd.DataFrame(rows, columns=LABELS.names)
        labels["rank"] = labels["rank"].astype("Int32")
        return labels


def call_item(step: Step, query_id: str, window: int) -> str:
    """What one call is about, as errors name it (:attr:`Request.item`)."""
    return f"query {query_id}" + (f" window {window}" if step.passages == "window" else "")


def parse_call(call: Call, outcome: Outcome) -> ParseResult:
    g = outcome.generation
    return parse_output(call.step.answer_format, g.text, len(call.shown), g.finish_reason)


def raw_rows(answered: Sequence[Answered], pools: Mapping[str, QueryPool]) -> pd.DataFrame:
    """One RAW row per LLM call (see ``utilann.schemas.RAW``)."""
    rows = []
    for a in answered:
        c, o, g = a.call, a.outcome, a.outcome.generation
        doc_ids = pools[c.query_id].doc_ids
        rows.append(
            {
                "query_id": c.query_id,
                "step": c.step.name,
                "window": c.window,
                "doc_ids": [doc_ids[i] for i in c.shown],
                "cache_key": o.key,
                "text": g.text,
                "prompt_tokens": g.prompt_tokens,
                "output_tokens": g.output_tokens,
                "finish_reason": g.finish_reason,
                "gen_seconds": o.gen_seconds,
                "from_cache": o.from_cache,
                "parse_status": a.parsed.status,
                "parse_issues": list(a.parsed.issues),
                "parsed_doc_ids": [doc_ids[i] for i in a.picked],
                "answer": a.parsed.text if c.step.answer_format == "text" else None,
            }
        )
    return pd.DataFrame(rows)
