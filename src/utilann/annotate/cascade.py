"""The annotation cascade over one pool shard: RelSel -> pseudo-answer -> UtilSel | UtilRank.

Each step batches the prompts of every query of the shard, looks them up in the
:class:`~utilann.annotate.cache.GenerationCache`, and generates the missing ones in chunks of
``chunk_size``, committing each chunk to the cache as soon as it is done. Chunks are fixed
slices of the step's request list (queries in pool order), so a resumed job regenerates exactly
the chunk a kill interrupted, with the same batch composition. The engine is only created when
some request misses the cache: a fully cached rerun loads no model.

Cascade rules (digest 3.2, 10.2): UtilSel and UtilRank see only the RelSel-selected passages,
in the order they were shown to RelSel; a query where RelSel selects nothing gets no
pseudo-answer and no utility call, and simply has no positive. A failed pseudo-answer is passed
on as an empty reference answer (the original code did the same when its answer was missing).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from tqdm.auto import tqdm

from utilann.annotate.cache import GenerationCache, request_key
from utilann.annotate.parse import STATUSES, parse_answer, parse_ranking, parse_selection
from utilann.annotate.prompts import Message, PromptTemplate, passage_text
from utilann.annotate.windows import merge_windows, relsel_windows
from utilann.labels import STRATEGIES
from utilann.llm import PROMPT_TOO_LONG, Generation
from utilann.schemas import LABELS

log = logging.getLogger(__name__)


class ChatBackend(Protocol):
    """What the cascade needs from an engine (``utilann.llm.VLLMChat`` in the pipeline)."""

    def chat(
        self, conversations: Sequence[Sequence[Message]], sampling: Mapping[str, Any]
    ) -> list[Generation]: ...


def cascade_steps(strategies: Sequence[str]) -> tuple[str, ...]:
    """LLM steps needed for ``strategies``, in execution order."""
    util = tuple(s for s in ("utilsel", "utilrank") if s in strategies)
    return ("relsel",) + (("answer",) if util else ()) + util


@dataclass(frozen=True)
class CascadeSettings:
    """Everything that decides which prompts are sent and how outputs become labels.

    ``model`` and ``dtype`` identify the annotator in cache keys; ``sampling`` is passed to the
    engine as is (``None`` values removed beforehand by the caller).
    """

    model: str
    dtype: str
    sampling: Mapping[str, Any]
    templates: Mapping[str, PromptTemplate]
    strategies: Sequence[str] = STRATEGIES
    window_size: int = 16
    position_policy: str = "fixed_first"
    seed: int = 0
    passage_max_words: int = 300
    chunk_size: int = 256

    def __post_init__(self) -> None:
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown or not self.strategies:
            raise ValueError(f"strategies must be a non-empty subset of {STRATEGIES}: {unknown}")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        missing = set(self.steps) - set(self.templates)
        if missing:
            raise ValueError(f"no prompt template for step(s) {sorted(missing)}")

    @property
    def steps(self) -> tuple[str, ...]:
        return cascade_steps(self.strategies)


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
class Request:
    """One LLM call: which step, which query, which pool passages (display order)."""

    step: str
    query_id: str
    window: int
    shown: tuple[int, ...]
    messages: list[Message]
    key: str


@dataclass
class Outcome:
    """A request with its generation and where the generation came from."""

    request: Request
    generation: Generation
    gen_seconds: float
    from_cache: bool
    status: str = ""
    issues: tuple[str, ...] = ()
    parsed: tuple[int, ...] = ()
    answer: str | None = None


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
    """Labels (LABELS schema), raw outputs (RAW schema) and per-step statistics of a shard."""

    labels: pd.DataFrame
    raw: pd.DataFrame
    stats: dict[str, StepStats]
    queries: dict[str, int]


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
                    passage_text(t, x, passage_max_words)
                    for t, x in zip(rows["title"], rows["text"], strict=True)
                ),
            )
        )
    return sorted(groups, key=lambda g: first_seen[g.query_id])


class Cascade:
    """Runs the cascade for one shard against a cache and a lazily created backend."""

    def __init__(
        self,
        settings: CascadeSettings,
        cache: GenerationCache,
        backend_factory: Callable[[], ChatBackend],
    ) -> None:
        self.settings = settings
        self.cache = cache
        self._backend_factory = backend_factory
        self._backend: ChatBackend | None = None
        self.stats = {step: StepStats() for step in settings.steps}

    # -- requests ---------------------------------------------------------------------------

    def _request(
        self, step: str, pool: QueryPool, window: int, shown: Sequence[int], answer: str = ""
    ) -> Request:
        s = self.settings
        messages = s.templates[step].render(pool.query, [pool.texts[i] for i in shown], answer)
        key = request_key(s.model, s.dtype, messages, s.sampling)
        return Request(step, pool.query_id, window, tuple(shown), messages, key)

    # -- generation -------------------------------------------------------------------------

    def _backend_or_start(self) -> ChatBackend:
        if self._backend is None:
            log.info("cache miss: starting the LLM engine for %s", self.settings.model)
            self._backend = self._backend_factory()
        return self._backend

    def _generate(self, requests: Sequence[Request], label: str) -> list[Outcome]:
        """Serve ``requests`` from the cache, generating and committing misses chunk by chunk."""
        known = self.cache.get_many([r.key for r in requests])
        outcomes: list[Outcome] = []
        size = self.settings.chunk_size
        with tqdm(total=len(requests), desc=label, unit="call", disable=not requests) as bar:
            for start in range(0, len(requests), size):
                chunk = requests[start : start + size]
                todo = {r.key: r for r in chunk if r.key not in known}
                if todo:
                    known.update(self._generate_chunk(list(todo.values())))
                for r in chunk:
                    generation, seconds = known[r.key]
                    fresh = todo.pop(r.key, None) is not None  # repeats of a key count as cached
                    outcomes.append(Outcome(r, generation, seconds, from_cache=not fresh))
                bar.update(len(chunk))
        for o in outcomes:
            st = self.stats[o.request.step]
            st.calls += 1
            st.generated += not o.from_cache
            st.cached += o.from_cache
            st.prompt_tokens += o.generation.prompt_tokens
            st.output_tokens += o.generation.output_tokens
            st.gen_seconds += o.gen_seconds
        return outcomes

    def _generate_chunk(self, todo: Sequence[Request]) -> dict[str, tuple[Generation, float]]:
        backend = self._backend_or_start()
        started = time.perf_counter()
        generations = backend.chat([r.messages for r in todo], self.settings.sampling)
        wall = time.perf_counter() - started
        if len(generations) != len(todo):
            raise RuntimeError(
                f"backend returned {len(generations)} outputs for {len(todo)} prompts"
            )
        tokens = [g.prompt_tokens + g.output_tokens for g in generations]
        total = sum(tokens) or len(tokens)
        seconds = [wall * (t or 1) / total for t in tokens]  # share of the batch's time
        self.cache.put_many(
            [
                (r.key, r.step, g, s)
                for r, g, s in zip(todo, generations, seconds, strict=True)
                if g.finish_reason != PROMPT_TOO_LONG
            ],  # may fit under another max_model_len
            model=self.settings.model,
        )
        return {r.key: (g, s) for r, g, s in zip(todo, generations, seconds, strict=True)}

    def _record_parse(self, o: Outcome, status: str, issues: Sequence[str]) -> None:
        o.status, o.issues = status, tuple(issues)
        st = self.stats[o.request.step]
        st.parse[status] += 1
        st.issues.update(issues)

    # -- the cascade ------------------------------------------------------------------------

    def _parse_selections(self, outcomes: Sequence[Outcome], ranking: bool = False) -> None:
        parse = parse_ranking if ranking else parse_selection
        for o in outcomes:
            g = o.generation
            result = parse(g.text, len(o.request.shown), g.finish_reason)
            self._record_parse(o, result.status, result.issues)
            o.parsed = tuple(o.request.shown[i - 1] for i in result.ids)

    def _relsel(
        self, queries: Sequence[QueryPool]
    ) -> tuple[list[Outcome], dict[str, dict[int, bool]]]:
        """RelSel over every window; per query, each shown passage's merged label."""
        s = self.settings
        windows = {
            q.query_id: relsel_windows(
                q.is_human, s.window_size, s.position_policy, s.seed, q.query_id
            )
            for q in queries
        }
        outcomes = self._generate(
            [
                self._request("relsel", q, w, shown)
                for q in queries
                for w, shown in enumerate(windows[q.query_id])
            ],
            "relsel",
        )
        self._parse_selections(outcomes)
        chosen: dict[str, list[set[int]]] = {q.query_id: [] for q in queries}
        for o in outcomes:  # windows come back in order, per query
            chosen[o.request.query_id].append(set(o.parsed))
        labels = {
            q.query_id: merge_windows(windows[q.query_id], chosen[q.query_id]) for q in queries
        }
        return outcomes, labels

    def _answers(
        self, queries: Sequence[QueryPool], subsets: Mapping[str, Sequence[int]]
    ) -> tuple[list[Outcome], dict[str, str]]:
        """Pseudo-answers from each query's RelSel subset (empty text when that failed)."""
        outcomes = self._generate(
            [self._request("answer", q, 0, subsets[q.query_id]) for q in queries], "answer"
        )
        answers = {}
        for o in outcomes:
            result = parse_answer(o.generation.text, o.generation.finish_reason)
            self._record_parse(o, result.status, result.issues)
            o.answer = answers[o.request.query_id] = result.text
        return outcomes, answers

    def _utility(
        self,
        queries: Sequence[QueryPool],
        subsets: Mapping[str, Sequence[int]],
        answers: Mapping[str, str],
    ) -> tuple[list[Outcome], dict[str, set[int]], dict[str, dict[int, int]]]:
        """UtilSel and UtilRank in one batch; selections and 1-based ranks by pool index."""
        steps = [step for step in ("utilsel", "utilrank") if step in self.settings.steps]
        outcomes = self._generate(
            [
                self._request(step, q, 0, subsets[q.query_id], answers[q.query_id])
                for q in queries
                for step in steps
            ],
            "+".join(steps),
        )
        selected: dict[str, set[int]] = {}
        ranks: dict[str, dict[int, int]] = {}
        for step in steps:
            mine = [o for o in outcomes if o.request.step == step]
            self._parse_selections(mine, ranking=step == "utilrank")
            for o in mine:
                if step == "utilsel":
                    selected[o.request.query_id] = set(o.parsed)
                else:
                    ranks[o.request.query_id] = {i: r for r, i in enumerate(o.parsed, start=1)}
        return outcomes, selected, ranks

    def run(self, pools: pd.DataFrame) -> ShardResult:
        """Annotate every query of ``pools`` (POOLS schema)."""
        queries = group_pools(pools, self.settings.passage_max_words)
        outcomes, relsel = self._relsel(queries)
        # the RelSel subset of each query, in the order its passages were shown
        subsets = {
            qid: [i for i, chosen in labels.items() if chosen] for qid, labels in relsel.items()
        }
        with_subset = [q for q in queries if subsets[q.query_id]]
        utilsel: dict[str, set[int]] = {}
        utilrank: dict[str, dict[int, int]] = {}
        if "answer" in self.settings.steps:
            answer_outcomes, answers = self._answers(with_subset, subsets)
            util_outcomes, utilsel, utilrank = self._utility(with_subset, subsets, answers)
            outcomes += answer_outcomes + util_outcomes

        labels = _label_rows(queries, self.settings.strategies, relsel, subsets, utilsel, utilrank)
        counts = {
            "queries": len(queries),
            "passages": sum(len(q.doc_ids) for q in queries),
            "relsel_empty": len(queries) - len(with_subset),
        }
        pools_by_id = {q.query_id: q for q in queries}
        return ShardResult(labels, _raw_rows(outcomes, pools_by_id), self.stats, counts)


def _label_rows(
    queries: Sequence[QueryPool],
    strategies: Sequence[str],
    relsel: Mapping[str, Mapping[int, bool]],
    subsets: Mapping[str, Sequence[int]],
    utilsel: Mapping[str, set[int]],
    utilrank: Mapping[str, Mapping[int, int]],
) -> pd.DataFrame:
    """One LABELS row per (query, pool passage, strategy); see ``utilann.schemas.LABELS``.

    ``selected`` of a ``utilrank`` row says whether the ranker placed the passage at all.
    """
    rows = []
    for q in queries:
        qid, n_sub = q.query_id, len(subsets[q.query_id])
        passages = zip(q.doc_ids, q.positions, q.is_human, strict=True)
        for i, (doc_id, position, human) in enumerate(passages):
            base = {
                "query_id": qid,
                "doc_id": doc_id,
                "position": position,
                "is_human_positive": human,
            }
            for strategy in strategies:
                rank = None
                if strategy == "relsel":
                    selected, length = relsel[qid].get(i, False), len(q.doc_ids)
                elif strategy == "utilsel":
                    selected, length = i in utilsel.get(qid, set()), n_sub
                else:
                    rank = utilrank.get(qid, {}).get(i)
                    selected, length = rank is not None, n_sub
                rows.append(
                    {
                        **base,
                        "strategy": strategy,
                        "selected": selected,
                        "rank": rank,
                        "list_length": length,
                    }
                )
    labels = pd.DataFrame(
        rows,
        columns=LABELS.names,
    )
    labels["rank"] = labels["rank"].astype("Int32")
    return labels


def _raw_rows(outcomes: Sequence[Outcome], pools: Mapping[str, QueryPool]) -> pd.DataFrame:
    """One RAW row per LLM call (see ``utilann.schemas.RAW``)."""
    rows = []
    for o in outcomes:
        r, g = o.request, o.generation
        doc_ids = pools[r.query_id].doc_ids
        rows.append(
            {
                "query_id": r.query_id,
                "step": r.step,
                "window": r.window,
                "doc_ids": [doc_ids[i] for i in r.shown],
                "cache_key": r.key,
                "text": g.text,
                "prompt_tokens": g.prompt_tokens,
                "output_tokens": g.output_tokens,
                "finish_reason": g.finish_reason,
                "gen_seconds": o.gen_seconds,
                "from_cache": o.from_cache,
                "parse_status": o.status,
                "parse_issues": list(o.issues),
                "parsed_doc_ids": [doc_ids[i] for i in o.parsed],
                "answer": o.answer,
            }
        )
    return pd.DataFrame(rows)
