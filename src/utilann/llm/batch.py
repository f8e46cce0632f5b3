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

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One LLM call: the template that rendered it, the conversation, its decoding.

    ``template`` is the template's :attr:`~utilann.llm.templates.PromptTemplate.fingerprint`.
    """

    template: str
    messages: Conversation
    sampling: Mapping[str, Any]


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
    """

    def __init__(
        self,
        cache: GenerationCache,
        identity: ModelIdentity,
        backend_factory: Callable[[], ChatBackend],
        chunk_size: int = 256,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.cache = cache
        self.identity = identity
        self.chunk_size = chunk_size
        self._backend_factory = backend_factory
        self._backend: ChatBackend | None = None
        self.generated = 0
        self.engine_seconds = 0.0

    @property
    def started(self) -> bool:
        """Whether the engine was started (some request missed the cache)."""
        return self._backend is not None

    def key(self, request: Request) -> str:
        return request_key(self.identity, request.template, request.sampling, request.messages)

    def generate(self, requests: Sequence[Request], desc: str = "generate") -> list[Outcome]:
        """One :class:`Outcome` per request, in input order."""
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

    def _generate_chunk(
        self, requests: Sequence[Request], keys: Sequence[str]
    ) -> dict[str, tuple[Generation, float]]:
        if self._backend is None:
            log.info("cache miss: starting the LLM engine for %s", self.identity.model)
            self._backend = self._backend_factory()
        started = time.perf_counter()
        generations = self._backend.chat(
            [r.messages for r in requests], [r.sampling for r in requests]
        )
        wall = time.perf_counter() - started
        if len(generations) != len(requests):
            raise RuntimeError(
                f"the LLM returned {len(generations)} outputs for {len(requests)} prompts"
            )
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


@contextmanager
def open_generator(
    spec: EngineSpec, cache_dir: str | os.PathLike[str], writer: str, chunk_size: int
) -> Iterator[CachedGenerator]:
    """A :class:`CachedGenerator` for an LLM job: its own file ``writer`` in ``cache_dir``, the
    engine of ``spec`` with its backend and dtype decided for this machine (logged; started on
    the first miss), ``chunk_size`` prompts per engine call."""
    spec = resolve(spec)
    with GenerationCache(cache_dir, writer) as cache:
        yield CachedGenerator(cache, ModelIdentity.resolve(spec), spec.start, chunk_size)
