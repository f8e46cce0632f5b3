"""The one generation loop of every LLM step: cached, de-duplicated, chunked, resumable.

:class:`CachedGenerator` serves a list of requests in input order. Each request's key
(:func:`~utilann.llm.cache.request_key`) is looked up in the
:class:`~utilann.llm.cache.GenerationCache`; the distinct misses are generated in chunks of
``chunk_size`` (in first-appearance order) and every chunk is committed to the cache as soon
as it is done, so a killed job loses at most the chunk in flight and its rerun regenerates
exactly the missing chunks, with the same batch composition. Identical requests are generated
once. The engine is created by the factory on the first miss only: a fully cached rerun never
loads a model.

Each :class:`Outcome` says whether its generation came from the cache (a repeat of a request
generated in the same call counts as cached) and how many engine seconds it cost (its
token share of its chunk's wall time).

Prompts that do not fit the context stop the job before they are generated (config
``llm.prompt_too_long: error``, :mod:`utilann.llm.limits`), or come back as
``prompt_too_long`` generations that are not cached (``skip``).

A request either generates (``mode="generate"``, the annotation and RAG steps) or scores a
given continuation (``mode="score"``: the log-probabilities of the conversation's last,
assistant message, REPLUG's answer likelihoods): both take the same cached, chunked path,
and the mode is part of the cache key.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from utilann.llm.backends import resolve
from utilann.llm.cache import GenerationCache, ModelIdentity, request_key
from utilann.llm.engine import PROMPT_TOO_LONG, ChatBackend, Conversation, EngineSpec, Generation
from utilann.llm.limits import ContextLimit, check_fit, tokenizer_limit

log = logging.getLogger(__name__)

#: The backend method (:class:`~utilann.llm.engine.ChatBackend`) that serves each request mode.
_BACKEND_METHODS = {"generate": "chat", "score": "score"}


@dataclass(frozen=True)
class Request:
    """One LLM call: the template that rendered it, the conversation, its decoding, its mode.

    ``template`` is the template's :attr:`~utilann.llm.templates.PromptTemplate.fingerprint`;
    ``mode`` is ``generate`` or ``score`` (:data:`~utilann.llm.cache.MODES`); ``item`` says
    what the call is about in its job (``query 42 window 1``) for error messages only: it is
    not part of the cache key.
    """

    template: str
    messages: Conversation
    sampling: Mapping[str, Any]
    mode: str = "generate"
    item: str = ""


@dataclass(frozen=True)
class Outcome:
    """A request's generation, its cache key, and where the generation came from."""

    key: str
    generation: Generation
    gen_seconds: float
    from_cache: bool


class CachedGenerator:
    """Serves requests from the cache, generating misses with a lazily started backend.

    Args:
        cache: the job's open store.
        identity: the engine's identity in cache keys.
        backend_factory: starts the engine (called at most once, on the first miss).
        chunk_size: distinct prompts per engine call; each chunk is committed at once.
        limit_factory: with ``llm.prompt_too_long: error``, the :class:`ContextLimit` every
            prompt to generate is checked against before its batch is generated; called once,
            on the first miss, before the engine starts; None from it means only the started
            engine knows the limit. None: no check (``skip``; the engines answer such
            prompts as ``prompt_too_long``).
    """

    def __init__(
        self,
        cache: GenerationCache,
        identity: ModelIdentity,
        backend_factory: Callable[[], ChatBackend],
        chunk_size: int = 256,
        limit_factory: Callable[[], ContextLimit | None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.cache = cache
        self.identity = identity
        self.chunk_size = chunk_size
        self._backend_factory = backend_factory
        self._backend: ChatBackend | None = None
        self._limit_factory = limit_factory
        self._limit: ContextLimit | None = None
        self.generated = 0
        self.engine_seconds = 0.0

    @property
    def started(self) -> bool:
        """Whether the engine was started (some request missed the cache)."""
        return self._backend is not None

    def prefix_cache(self) -> dict[str, Any] | None:
        """vLLM's prefix-cache queries, hits and hit rate in prompt tokens (None: no engine)."""
        stats = getattr(self._backend, "prefix_cache_stats", None)
        if stats is None:
            return None
        counts = stats()
        rate = counts["hits"] / counts["queries"] if counts["queries"] else None
        return {**counts, "hit_rate": rate}

    def key(self, request: Request) -> str:
        return request_key(
            self.identity, request.template, request.sampling, request.messages, request.mode
        )

    def generate(self, requests: Sequence[Request], desc: str = "generate") -> list[Outcome]:
        """One :class:`Outcome` per request, in input order.

        With a ``limit_factory``, a :class:`~utilann.llm.limits.PromptTooLongError` before
        anything is generated when a prompt to generate does not fit the context.
        """
        keys = [self.key(r) for r in requests]
        known = self.cache.get_many(keys)
        first: dict[str, int] = {}  # each missing key -> its first request
        for i, key in enumerate(keys):
            if key not in known:
                first.setdefault(key, i)
        misses = list(first.values())
        log.info(
            "%s: %d requests, %d distinct to generate, the rest from the cache or repeats",
            desc,
            len(requests),
            len(misses),
        )
        if misses and self._limit_factory is not None:
            limit = self._context_limit(self._limit_factory)
            check_fit([requests[i] for i in misses], limit, desc)
        fresh: set[str] = set()
        with tqdm(total=len(misses), desc=desc, unit="call", disable=not misses) as bar:
            for start in range(0, len(misses), self.chunk_size):
                chunk = misses[start : start + self.chunk_size]
                done = self._generate_chunk([requests[i] for i in chunk], [keys[i] for i in chunk])
                known.update(done)
                fresh.update(done)
                bar.update(len(chunk))
        too_long = [
            known[k][0].prompt_tokens for k in fresh if known[k][0].finish_reason == PROMPT_TOO_LONG
        ]
        if too_long:
            log.warning(
                "%s: %d of %d prompts do not fit max_model_len %s (longest %d tokens): returned "
                "as prompt_too_long (failed parses, not cached); raise llm.engine.max_model_len "
                "or shorten the prompts (e.g. annotation.passage_max_words)",
                desc,
                len(too_long),
                len(misses),
                getattr(self._backend, "max_model_len", "?"),
                max(too_long),
            )
        outcomes = []
        for key in keys:
            generation, seconds = known[key]
            outcomes.append(Outcome(key, generation, seconds, from_cache=key not in fresh))
            fresh.discard(key)  # a repeat of a key generated here counts as cached
        return outcomes

    def _engine(self) -> ChatBackend:
        """The engine, started on the first call."""
        if self._backend is None:
            log.info("cache miss: starting the LLM engine for %s", self.identity.model)
            self._backend = self._backend_factory()
        return self._backend

    def _context_limit(self, factory: Callable[[], ContextLimit | None]) -> ContextLimit:
        """The limit prompts are checked against: ``factory``'s, made without the engine,
        where it has one; else the started engine's."""
        if self._limit is None:
            self._limit = factory() or ContextLimit.of_engine(self._engine())
        return self._limit

    def _generate_chunk(
        self, requests: Sequence[Request], keys: Sequence[str]
    ) -> dict[str, tuple[Generation, float]]:
        self._engine()
        started = time.perf_counter()
        generations = self._serve(requests)
        wall = time.perf_counter() - started
        tokens = [g.prompt_tokens + g.output_tokens for g in generations]
        total = sum(tokens) or len(tokens)
        seconds = [wall * (t or 1) / total for t in tokens]  # share of the chunk's time
        self.cache.put_many(
            [
                (key, r.template, g, s)
                for key, r, g, s in zip(keys, requests, generations, seconds, strict=True)
                if g.finish_reason != PROMPT_TOO_LONG  # may fit under another max_model_len
            ],
            model=self.identity.model,
        )
        self.generated += len(requests)
        self.engine_seconds += wall
        return {key: (g, s) for key, g, s in zip(keys, generations, seconds, strict=True)}

    def _serve(self, requests: Sequence[Request]) -> list[Generation]:
        """One engine call per mode present in ``requests``; results in request order."""
        results: dict[int, Generation] = {}
        for mode, method in _BACKEND_METHODS.items():
            picked = [i for i, r in enumerate(requests) if r.mode == mode]
            if not picked:
                continue
            out = getattr(self._backend, method)(
                [requests[i].messages for i in picked], [requests[i].sampling for i in picked]
            )
            if len(out) != len(picked):
                raise RuntimeError(f"the LLM returned {len(out)} outputs for {len(picked)} prompts")
            results.update(zip(picked, out, strict=True))
        return [results[i] for i in range(len(requests))]


@contextmanager
def open_generator(
    spec: EngineSpec, cache_dir: str | os.PathLike[str], writer: str, chunk_size: int
) -> Iterator[CachedGenerator]:
    """A :class:`CachedGenerator` for an LLM job: its own file ``writer`` in ``cache_dir``, the
    engine of ``spec`` with its backend and dtype decided for this machine (logged; started on
    the first miss), ``chunk_size`` prompts per engine call, prompts that do not fit checked
    before they are generated where ``spec.prompt_too_long`` is ``error``."""
    spec = resolve(spec)
    limit = (lambda: tokenizer_limit(spec)) if spec.prompt_too_long == "error" else None
    with GenerationCache(cache_dir, writer) as cache:
        yield CachedGenerator(cache, ModelIdentity.resolve(spec), spec.start, chunk_size, limit)
