"""Backend and dtype choice per machine (capabilities injected), and the transformers
backend's pure parts: which sampling it honours, how it maps vLLM's, how it batches."""

from __future__ import annotations

import logging

import pytest

from utilann.hardware import Hardware, resolve_llm_dtype
from utilann.llm.backends import BACKENDS, choose_backend, get_backend, resolve
from utilann.llm.cache import ModelIdentity
from utilann.llm.engine import EngineSpec
from utilann.llm.transformers_engine import TransformersChat, _checked, _generate_kwargs

BF16_CPU = Hardware("cpu", "Intel(R) Xeon(R) Platinum 8480+", "AVX512", ("AMX", "AVX512-BF16"))
AVX2_CPU = Hardware("cpu", "AMD EPYC 7B12", "AVX2")
AVX512_CPU = Hardware("cpu", "Xeon Gold 6148", "AVX512")
A100 = Hardware("cuda", cpu_capability="AVX2", gpu_name="NVIDIA A100", gpu_bf16=True)
V100 = Hardware("cuda", cpu_capability="AVX2", gpu_name="Tesla V100", gpu_bf16=False)


@pytest.mark.parametrize(
    ("hw", "requested", "expected"),
    [
        (BF16_CPU, "auto", "bf16"),
        (AVX2_CPU, "auto", "fp32"),
        (AVX512_CPU, "auto", "fp32"),
        (A100, "auto", "bf16"),
        (V100, "auto", "fp16"),  # vLLM's own auto: no loss scale in inference
        (AVX2_CPU, "bfloat16", "bf16"),  # asked: honoured (slow, with a warning)
        (BF16_CPU, "float16", "fp32"),  # fp16 is a GPU setting
        (V100, "float32", "fp32"),
    ],
)
def test_llm_dtype_per_machine(hw, requested, expected):
    assert resolve_llm_dtype(requested, hw).name == expected


def test_unknown_llm_dtype_is_an_error():
    with pytest.raises(ValueError, match="llm.engine.dtype must be one of"):
        resolve_llm_dtype("bf16", BF16_CPU)  # the encoder's name, not vLLM's


@pytest.mark.parametrize(
    ("hw", "requested", "vllm", "expected"),
    [
        (A100, "auto", True, "vllm"),
        (V100, "auto", True, "vllm"),
        (AVX2_CPU, "auto", True, "transformers"),  # vLLM-CPU's slow path (issue 14)
        (BF16_CPU, "auto", True, "vllm"),
        (AVX512_CPU, "auto", True, "vllm"),
        (A100, "auto", False, "transformers"),
        (AVX2_CPU, "vllm", True, "vllm"),  # asked: honoured
        (A100, "transformers", True, "transformers"),
    ],
)
def test_backend_per_machine(hw, requested, vllm, expected):
    chosen, reason = choose_backend(requested, hw, vllm_installed=vllm)
    assert chosen == expected and reason


def test_constrained_decoding_gets_vllm_under_auto(tmp_path):
    """The transformers backend refuses structured outputs: an AVX2 CPU's ``auto`` must not
    pick it for a constrained job (and still does for the same job decoding freely)."""
    engine = {"dtype": "auto", "structured_outputs_config": {"backend": "guidance"}}
    spec = EngineSpec("m", str(tmp_path), engine, backend="auto")
    assert resolve(spec, AVX2_CPU).backend == "vllm"
    assert choose_backend("auto", AVX2_CPU, True, "constrained decoding") == (
        "vllm",
        "constrained decoding needs vLLM",
    )
    free = EngineSpec("m", str(tmp_path), {"dtype": "auto"}, backend="auto")
    assert resolve(free, AVX2_CPU).backend == "transformers"


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="llm.backend must be one of"):
        choose_backend("llama.cpp", BF16_CPU, vllm_installed=True)
    with pytest.raises(ValueError, match="unknown LLM backend 'auto'"):
        get_backend("auto")  # resolved first


def test_resolve_decides_backend_and_dtype_and_logs_why(caplog, tmp_path):
    spec = EngineSpec("m", str(tmp_path), {"dtype": "auto", "seed": 0}, backend="auto")
    with caplog.at_level(logging.INFO):
        resolved = resolve(spec, AVX2_CPU)
    assert resolved.backend == "transformers" and resolved.engine["dtype"] == "float32"
    assert "LLM backend auto -> transformers" in caplog.text
    assert "dtype auto -> float32 (this CPU (AVX2) has no native bf16" in caplog.text
    on_gpu = resolve(spec, A100)
    assert on_gpu.backend == "vllm" and on_gpu.engine["dtype"] == "bfloat16"


def test_cache_identity_holds_what_runs(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    spec = EngineSpec("m", str(tmp_path), {"dtype": "auto"}, backend="auto")
    with pytest.raises(ValueError, match="unresolved engine"):
        ModelIdentity.resolve(spec)
    cpu = ModelIdentity.resolve(resolve(spec, AVX2_CPU))
    gpu = ModelIdentity.resolve(resolve(spec, A100))
    assert (cpu.backend, cpu.dtype) == ("transformers", "float32")
    assert (gpu.backend, gpu.dtype) == ("vllm", "bfloat16")
    assert cpu.engine_version == BACKENDS["transformers"].version()
    assert cpu != gpu  # so their generations never share a cache key


def test_transformers_refuses_what_it_cannot_honour():
    assert _checked({"temperature": 0.0, "max_tokens": 8, "top_p": None}) == {
        "temperature": 0.0,
        "max_tokens": 8,
    }
    assert _checked({"temperature": 0.0})["max_tokens"] == 16  # vLLM's default
    for sampling, named in [
        ({"structured_outputs": {"choice": ["a"]}}, "structured_outputs"),
        ({"logprobs": 1}, "logprobs"),
        ({"n": 2}, "n > 1"),
    ]:
        with pytest.raises(ValueError, match=f"cannot honour sampling {named}"):
            _checked(sampling)


def test_vllm_sampling_as_generate_arguments():
    assert _generate_kwargs({"temperature": 0.0}) == {
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    sampled = _generate_kwargs({"temperature": 0.7, "top_k": -1})
    assert sampled["do_sample"] and sampled["top_k"] is None and sampled["top_p"] == 1.0


def batcher(batch_tokens: int, max_batch_size: int, max_model_len: int = 100):
    chat = object.__new__(TransformersChat)  # the batching needs no model
    chat.batch_tokens, chat.max_batch_size, chat.max_model_len = (
        batch_tokens,
        max_batch_size,
        max_model_len,
    )
    return chat


def test_batches_are_longest_first_within_the_token_budget():
    rendered = [[0] * n for n in (10, 50, 20, 40, 30)]
    # padded width = longest prompt + output room (8): 58, 48, ...; budget 120 tokens
    batches = batcher(120, 8)._batches(range(5), rendered, max_tokens=8)
    assert batches == [[1, 3], [4, 2, 0]]  # 2 x 58 <= 120 < 3 x 58; 3 x 38 <= 120
    assert batcher(10_000, 2)._batches(range(5), rendered, 8) == [[1, 3], [4, 2], [0]]
    # output room is capped by the context: 95 + min(8, 100 - 95)
    assert batcher(100, 8)._batches([0], [[0] * 95], 8) == [[0]]
