"""The LLM engine: chat conversations in, :class:`Generation` objects out.

Every LLM step of the pipeline (the annotation cascade, RAG generation) talks to an engine
through the :class:`ChatBackend` protocol, and only through the cached loop of
:mod:`utilann.llm.batch`. Two backends implement it: :class:`VLLMChat` (vLLM offline, the
engine on GPUs) and :class:`~utilann.llm.transformers_engine.TransformersChat` (batched
``generate``, faster on some CPUs); :mod:`utilann.llm.backends` chooses one per machine::

    chat = VLLMChat("resources/models/smollm2-135m-instruct", dtype="bfloat16", enforce_eager=True)
    gens = chat.chat([[{"role": "user", "content": "Hi"}]], [{"temperature": 0, "max_tokens": 64}])
    gens[0].text, gens[0].prompt_tokens, gens[0].output_tokens

Besides generating, an engine *scores*: :meth:`VLLMChat.score` returns the log-probability of
each token of a conversation's final assistant message given everything before it (the
REPLUG baseline's ``P(a | q, d)``), read from vLLM's prompt logprobs in one forward pass
(:data:`SCORE_SAMPLING`); :func:`continuation_logprobs` reads them back from the
:class:`Generation`.

Why render the chat template ourselves instead of calling ``LLM.chat``: we need the prompt
length before submitting (vLLM rejects the whole batch when one prompt exceeds
``max_model_len``), and we neutralise special-token strings that appear *inside* message
contents, so that a passage containing ``<|im_start|>assistant`` cannot open a new turn.

vLLM spawns worker processes: create :class:`VLLMChat` only from code running under
``if __name__ == "__main__":`` (Snakemake scripts do), never at import time. vLLM reads its
environment (e.g. ``VLLM_CPU_KVCACHE_SPACE``) when the engine starts: set it before
(:meth:`EngineSpec.start` does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = Mapping[str, str]
Conversation = Sequence[Message]
Sampling = Mapping[str, Any]

#: finish_reason of a prompt that was not submitted because it does not fit the context.
PROMPT_TOO_LONG = "prompt_too_long"
#: What an LLM job does with prompts that do not fit (config ``llm.prompt_too_long``): ``error``
#: stops it before they are generated (:mod:`utilann.llm.limits`), ``skip`` answers them as
#: :data:`PROMPT_TOO_LONG`.
PROMPT_TOO_LONG_POLICIES = ("error", "skip")
#: finish_reason of a scoring request (:meth:`VLLMChat.score`).
SCORED = "scored"
#: The decoding of every scoring request: the prompt's own token log-probabilities (0 = only
#: the actual token's, no top-k alternatives) and the one output token vLLM must generate
#: (discarded). Part of each scoring request's cache key.
SCORE_SAMPLING: Mapping[str, Any] = {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0}


@dataclass(frozen=True)
class Generation:
    """One completion: the text and what it cost."""

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str


class ChatBackend(Protocol):
    """What an LLM step needs from an engine: one completion per conversation, in order.

    ``sampling[i]`` holds the decoding parameters of ``conversations[i]`` (a plain mapping,
    see :func:`sampling_params`), so that steps with different decoding (or, later,
    per-prompt structured outputs) can share one engine call. ``renderer`` (the one
    :class:`ChatRenderer` of every backend; ``render`` applies it) and ``max_model_len`` say
    what a prompt costs and whether it fits.

    ``score`` rates instead of generating: for each conversation, whose last message is an
    assistant turn, the log-probability of that turn's tokens given the rest, returned as a
    :class:`Generation` with ``finish_reason`` :data:`SCORED` whose text
    :func:`continuation_logprobs` decodes.
    """

    max_model_len: int
    renderer: ChatRenderer

    def render(self, conversation: Conversation) -> list[int]: ...

    def chat(
        self, conversations: Sequence[Conversation], sampling: Sequence[Sampling]
    ) -> list[Generation]: ...

    def score(
        self, conversations: Sequence[Conversation], sampling: Sequence[Sampling]
    ) -> list[Generation]: ...


def continuation_logprobs(generation: Generation) -> list[float]:
    """The per-token log-probabilities of a scoring request's continuation, in order."""
    if generation.finish_reason != SCORED:
        raise ValueError(f"not a scored continuation (finish_reason {generation.finish_reason!r})")
    return [float(x) for x in json.loads(generation.text)]


def sampling_params(sampling: Sampling) -> Any:
    """The one place a sampling mapping becomes ``vllm.SamplingParams``.

    ``None`` values mean "vLLM's default" and are left out. Configs and cache keys only ever
    hold plain mappings; anything vLLM wants as an object (e.g. ``structured_outputs`` as
    ``StructuredOutputsParams``) is built here from its mapping.
    """
    from vllm import SamplingParams

    params = {k: v for k, v in sampling.items() if v is not None}
    if isinstance(params.get("structured_outputs"), Mapping):
        from vllm.sampling_params import StructuredOutputsParams

        params["structured_outputs"] = StructuredOutputsParams(**params["structured_outputs"])
    return SamplingParams(**params)


def vllm_version() -> str:
    """Installed vLLM version (for manifests), without importing the engine."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "not-installed"


class VLLMChat:
    """A vLLM offline engine that turns chat conversations into :class:`Generation` objects.

    Args:
        model_path: HF model id or local directory.
        chat_template_kwargs: extra variables for the chat template (e.g. ``enable_thinking``).
        **engine_kwargs: passed to ``vllm.LLM`` (tensor_parallel_size, dtype, max_model_len,
            enable_prefix_caching, enforce_eager, seed, gpu_memory_utilization, ...).
    """

    def __init__(
        self,
        model_path: str,
        *,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from vllm import LLM  # heavy import, only when an engine is really wanted

        self.model_path = model_path
        # stats on: vLLM then counts prefix-cache queries and hits (prefix_cache_stats)
        self.llm = LLM(model=model_path, **{"disable_log_stats": False, **engine_kwargs})
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.renderer = ChatRenderer(self.tokenizer, chat_template_kwargs)

    def prefix_cache_stats(self) -> dict[str, int]:
        """Prompt tokens looked up in vLLM's prefix cache and found there, since start-up."""
        counters = {m.name: getattr(m, "value", 0) for m in self.llm.get_metrics()}
        return {
            "queries": int(counters.get("vllm:prefix_cache_queries", 0)),
            "hits": int(counters.get("vllm:prefix_cache_hits", 0)),
        }

    def render(self, conversation: Conversation) -> list[int]:
        """Token ids of ``conversation`` under the model's chat template, ready to generate."""
        return self.renderer(conversation)

    def chat(
        self,
        conversations: Sequence[Conversation],
        sampling: Sequence[Sampling],
        *,
        use_tqdm: bool = True,
    ) -> list[Generation]:
        """Generate one completion per conversation, batched by vLLM, in input order.

        Prompts that leave no room for a single output token are not submitted; they come
        back with ``finish_reason == PROMPT_TOO_LONG`` and an empty text.
        """
        from vllm.inputs import TokensPrompt

        if len(sampling) != len(conversations):
            raise ValueError(f"{len(sampling)} sampling settings for {len(conversations)} prompts")
        rendered = [self.render(c) for c in conversations]
        fits = [i for i, ids in enumerate(rendered) if len(ids) < self.max_model_len]
        built: dict[str, Any] = {}  # one SamplingParams per distinct setting
        params = []
        for i in fits:
            key = json.dumps(sampling[i], sort_keys=True, default=str)
            if key not in built:
                built[key] = sampling_params(sampling[i])
            params.append(built[key])
        outputs = (
            self.llm.generate(
                [TokensPrompt(prompt_token_ids=rendered[i]) for i in fits],
                params[0] if len(built) == 1 else params,
                use_tqdm=use_tqdm,
            )
            if fits
            else []
        )
        result = [Generation("", len(ids), 0, PROMPT_TOO_LONG) for ids in rendered]
        for i, out in zip(fits, outputs, strict=True):
            completion = out.outputs[0]
            result[i] = Generation(
                text=completion.text,
                prompt_tokens=len(out.prompt_token_ids or rendered[i]),
                output_tokens=len(completion.token_ids),
                finish_reason=str(completion.finish_reason),
            )
        return result

    def score(
        self,
        conversations: Sequence[Conversation],
        sampling: Sequence[Sampling],
        *,
        use_tqdm: bool = True,
    ) -> list[Generation]:
        """Log-probabilities of each conversation's final assistant message given the rest.

        The context (every message but the last) is rendered with the chat template and the
        generation prompt, exactly as :meth:`chat` would send it; the continuation is
        tokenised on its own (no special tokens) and appended (:func:`scored_prompt`), so its
        tokens are those the model would have had to generate (lm-eval-harness encodes
        context and continuation the same way). One forward pass with prompt logprobs yields
        every continuation token's log-probability; the result's text is their JSON list
        (:func:`continuation_logprobs`). Prompts that do not fit come back as
        :data:`PROMPT_TOO_LONG`. vLLM does not read the prefix cache for a request with
        prompt logprobs (``SamplingParams.skip_reading_prefix_cache``, so that every prompt
        position gets its log-probability): scoring pays the full prefill of each prompt.
        """
        from vllm.inputs import TokensPrompt

        if len(sampling) != len(conversations):
            raise ValueError(f"{len(sampling)} sampling settings for {len(conversations)} prompts")
        prompts = [scored_prompt(self.renderer, c) for c in conversations]
        fits = [i for i, (ids, _) in enumerate(prompts) if len(ids) < self.max_model_len]
        outputs = (
            self.llm.generate(
                [TokensPrompt(prompt_token_ids=prompts[i][0]) for i in fits],
                [sampling_params({**sampling[i], **SCORE_SAMPLING}) for i in fits],
                use_tqdm=use_tqdm,
            )
            if fits
            else []
        )
        result = [Generation("", len(ids), 0, PROMPT_TOO_LONG) for ids, _ in prompts]
        for i, out in zip(fits, outputs, strict=True):
            ids, n = prompts[i]
            logprobs = [
                out.prompt_logprobs[pos][ids[pos]].logprob for pos in range(len(ids) - n, len(ids))
            ]
            result[i] = Generation(
                text=json.dumps(logprobs),
                prompt_tokens=len(ids),
                output_tokens=len(out.outputs[0].token_ids),
                finish_reason=SCORED,
            )
        return result


class ChatRenderer:
    """Conversations to prompt token ids: the one rendering of every backend and of the
    prompt-length check, so that all of them count the same tokens."""

    def __init__(self, tokenizer: Any, chat_template_kwargs: Mapping[str, Any] | None = None):
        self.tokenizer = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.special = _special_token_strings(tokenizer)

    def __call__(self, conversation: Conversation) -> list[int]:
        return chat_prompt_ids(
            self.tokenizer, conversation, self.special, **self.chat_template_kwargs
        )


def scored_prompt(renderer: ChatRenderer, conversation: Conversation) -> tuple[list[int], int]:
    """The token ids a scoring request sends (:meth:`VLLMChat.score`) and how many of them,
    at the end, are the continuation whose log-probabilities are read.

    The context (every message but the last) is rendered as :meth:`VLLMChat.chat` would send
    it; the last, assistant message is tokenised on its own (special tokens defused, none
    added) and appended.
    """
    if not conversation or conversation[-1]["role"] != "assistant":
        raise ValueError("a scored conversation must end with the assistant turn to score")
    context = renderer(conversation[:-1])
    answer = defuse_special_tokens(conversation[-1]["content"], renderer.special)
    continuation = list(renderer.tokenizer.encode(answer, add_special_tokens=False))
    if not continuation:
        raise ValueError("a scored continuation must have at least one token")
    return context + continuation, len(continuation)


def chat_prompt_ids(
    tokenizer: Any,
    conversation: Conversation,
    special_tokens: Sequence[str] | None = None,
    **chat_template_kwargs: Any,
) -> list[int]:
    """Apply the chat template to ``conversation`` with special tokens defused in contents."""
    special = _special_token_strings(tokenizer) if special_tokens is None else special_tokens
    safe = [
        {"role": m["role"], "content": defuse_special_tokens(m["content"], special)}
        for m in conversation
    ]
    ids = tokenizer.apply_chat_template(
        safe, tokenize=True, add_generation_prompt=True, **chat_template_kwargs
    )
    if isinstance(ids, Mapping):  # some tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def _special_token_strings(tokenizer: Any) -> list[str]:
    """Every special/control token string of ``tokenizer``, longest first."""
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            tokens.add(str(added.content if hasattr(added, "content") else added))
    return sorted((t for t in tokens if t), key=len, reverse=True)


def defuse_special_tokens(text: str, special_tokens: Sequence[str]) -> str:
    """Break up special-token strings in untrusted text so the tokenizer reads them as text.

    A zero-width space after the first character keeps the text readable for the model but
    stops the tokenizer from matching the control token.
    """
    for token in special_tokens:
        if token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text


@dataclass(frozen=True)
class EngineSpec:
    """Which model an LLM job loads and how: everything it needs to start its engine.

    Attributes:
        model: the model's name in cache keys and metadata (config ``llm.model``).
        path: what the engine loads (HF id or prepared local directory).
        engine: engine arguments (config ``llm.engine``): ``vllm.LLM`` keyword arguments, of
            which the transformers backend reads ``dtype``, ``max_model_len`` and ``seed``.
        env: environment variables set before the engine starts (vLLM-CPU knobs).
        chat_template_kwargs: extra chat-template variables (e.g. ``enable_thinking``).
        backend: ``vllm``, ``transformers`` or ``auto`` (config ``llm.backend``);
            :func:`utilann.llm.backends.resolve` turns ``auto`` and ``dtype: auto`` into what
            this machine runs.
        transformers: the transformers backend's batching (config ``llm.transformers``).
        prompt_too_long: what the job's generation loop does with a prompt that does not fit
            (config ``llm.prompt_too_long``, :data:`PROMPT_TOO_LONG_POLICIES`).
    """

    model: str
    path: str
    engine: Mapping[str, Any]
    env: Mapping[str, Any] = field(default_factory=dict)
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "vllm"
    transformers: Mapping[str, Any] = field(default_factory=dict)
    prompt_too_long: str = "error"

    def __post_init__(self) -> None:
        if self.prompt_too_long not in PROMPT_TOO_LONG_POLICIES:
            raise ValueError(
                f"llm.prompt_too_long must be one of {list(PROMPT_TOO_LONG_POLICIES)}, "
                f"got {self.prompt_too_long!r}"
            )

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> EngineSpec:
        """The engine of an LLM job's spec (:func:`utilann.plan.llm_job`'s dict)."""
        return cls(
            job["model"],
            job["path"],
            job["engine"],
            job["env"],
            job["chat_template_kwargs"],
            backend=job["backend"],
            transformers=job["transformers"],
            prompt_too_long=job["prompt_too_long"],
        )

    def start(self) -> ChatBackend:
        """Set the environment (vLLM-CPU reads it at start-up), then start the engine.

        The one place an LLM job creates its engine, passed to
        :class:`~utilann.llm.batch.CachedGenerator` as the factory it calls on a cache miss.
        """
        from utilann.llm.backends import get_backend

        os.environ.update({k: str(v) for k, v in self.env.items()})
        return get_backend(self.backend).start(self)
