"""Prompts that do not fit the context: found before anything is generated, an input error.

What fits is what vLLM accepts: a prompt must be shorter than ``max_model_len`` (vLLM's
``InputProcessor._validate_prompt_len`` in ``vllm/v1/engine/input_processor.py`` refuses a
longer prompt, and one of exactly ``max_model_len`` tokens since it leaves no room for an
output token). ``max_tokens`` need not fit as well: vLLM stops a generation when prompt and
output reach ``max_model_len`` (``finish_reason`` ``length``, the scheduler's ``check_stop``),
and the transformers backend caps ``max_tokens`` the same way. Both backends answer a prompt
that does not fit as :data:`~utilann.llm.engine.PROMPT_TOO_LONG` without sending it (config
``llm.prompt_too_long: skip``: a failed parse, counted in the report).

With ``llm.prompt_too_long: error`` (the default) the generation loop checks every prompt it
is about to generate against a :class:`ContextLimit` and stops the job with one
:class:`PromptTooLongError` before any prompt of that batch is generated: a misconfigured
``max_model_len`` on a 32B model would otherwise spend GPU-hours producing failed labels.
Where ``llm.engine.max_model_len`` is set, the limit comes from the tokenizer alone
(:func:`tokenizer_limit`), so the first step's prompts are checked before the engine starts;
where it is unset, the limit is the started engine's (the model's own context length, as vLLM
derives it from the model config). The prompts of later steps are checked before their own
batch; the calls of earlier batches are committed to the LLM cache by then and stay valid.

Cost: the check renders each prompt it is about to generate once more than the engine does
(2.2 ms for a 1,563-token demo RelSel prompt with SmolLM2's tokenizer, AMD EPYC, one core;
the paper's 2.69B planned prompt tokens would take about one CPU-hour, spread over its 64
annotation jobs). ``skip`` does not pay it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from utilann.llm.engine import ChatBackend, ChatRenderer, EngineSpec, scored_prompt

if TYPE_CHECKING:
    from utilann.llm.batch import Request

#: what to change when prompts do not fit (part of every :class:`PromptTooLongError`)
REMEDIES = (
    "raise llm.engine.max_model_len (up to the model's context length), shorten the prompts "
    "(annotation: annotation.passage_max_words, annotation.window_size), or set "
    "llm.prompt_too_long: skip to answer them as failed prompt_too_long calls"
)


class PromptTooLongError(ValueError):
    """Prompts of an LLM job do not fit ``max_model_len`` (``llm.prompt_too_long: error``)."""


@dataclass(frozen=True)
class ContextLimit:
    """How a job's prompts are tokenised, the context they must fit, and where it is set.

    Attributes:
        renderer: the backends' own rendering (chat template, defused special tokens).
        max_model_len: a prompt must have fewer tokens (vLLM's rule, module docstring).
        source: where ``max_model_len`` comes from, as the error names it.
    """

    renderer: ChatRenderer
    max_model_len: int
    source: str

    @classmethod
    def of_engine(cls, backend: ChatBackend) -> ContextLimit:
        """The limit of a started engine (``llm.engine.max_model_len`` unset: the model's)."""
        return cls(
            backend.renderer,
            int(backend.max_model_len),
            "the model's context length; llm.engine.max_model_len is unset",
        )

    def prompt_tokens(self, request: Request) -> int:
        """The tokens ``request`` sends: its rendered chat, or a scored prompt's context and
        continuation (:func:`~utilann.llm.engine.scored_prompt`)."""
        if request.mode == "score":
            return len(scored_prompt(self.renderer, request.messages)[0])
        return len(self.renderer(request.messages))


def tokenizer_limit(spec: EngineSpec) -> ContextLimit | None:
    """The limit of ``spec``'s job without its engine: the model's tokenizer (as vLLM loads
    it: ``llm.engine.extra.tokenizer`` if set, else the model) and ``llm.engine.max_model_len``;
    None where that is unset (only the started engine knows the model's context length)."""
    max_len = spec.engine.get("max_model_len")
    if not max_len:
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.engine.get("tokenizer") or spec.path)
    return ContextLimit(
        ChatRenderer(tokenizer, spec.chat_template_kwargs),
        int(max_len),
        "llm.engine.max_model_len",
    )


def check_fit(requests: Sequence[Request], limit: ContextLimit, desc: str) -> None:
    """Raise :class:`PromptTooLongError` if some of ``requests`` (the prompts a batch of
    ``desc`` is about to generate) do not fit ``limit``: how many, the longest (its tokens,
    template and item), the limit, where it is set, and what to change."""
    tokens = [limit.prompt_tokens(r) for r in requests]
    over = [i for i, n in enumerate(tokens) if n >= limit.max_model_len]
    if not over:
        return
    worst = max(over, key=tokens.__getitem__)
    raise PromptTooLongError(
        f"{desc}: {len(over)} of {len(requests)} prompts to generate do not fit max_model_len "
        f"{limit.max_model_len} ({limit.source}); a prompt must be shorter, to leave room for "
        f"an output token. The longest is {describe(requests[worst])}: {tokens[worst]} "
        f"tokens. Nothing of this batch was generated (calls generated before stay in the LLM "
        f"cache). To fix: {REMEDIES}."
    )


def describe(request: Request) -> str:
    """``request`` as an error names it: its template (``name@sha256`` without the hash) and
    what it is about in its job (:attr:`~utilann.llm.batch.Request.item`)."""
    template = request.template.split("@", 1)[0]
    return f"the {template} prompt of {request.item}" if request.item else f"a {template} prompt"
