"""Which LLM engine a job runs, in which dtype: the backend registry and the ``auto`` rules.

``llm.backend`` names a backend of :data:`BACKENDS` or ``auto``, ``llm.engine.dtype`` a dtype
or ``auto``; :func:`resolve` decides both at job time, on the machine the job runs on, and logs
what it chose and why (the rule's params keep what was asked, so moving a workflow between
machines does not rerun it; the cache key holds what was chosen, see
:class:`~utilann.llm.cache.ModelIdentity`):

* dtype ``auto``: :func:`utilann.hardware.resolve_llm_dtype` (bf16 where the device computes
  it natively, else fp32 on CPUs, fp16 on older GPUs);
* backend ``auto``: vLLM on a GPU (continuous batching, paged attention, tensor parallelism);
  on a CPU, :func:`choose_backend`'s rule (vLLM with AVX-512, transformers without);
  transformers where vLLM is not installed. ``benchmarks/llm_backends.py`` measures
  both engines on the demo's annotation prompts on the machine it runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version

from utilann.hardware import Hardware, detect, resolve_llm_dtype
from utilann.llm.engine import ChatBackend, EngineSpec, VLLMChat, vllm_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """An engine that implements :class:`~utilann.llm.engine.ChatBackend`.

    Attributes:
        start: builds the engine from a resolved :class:`EngineSpec`.
        version: the installed engine's version (part of the cache key: kernels change
            outputs), without importing it.
    """

    start: Callable[[EngineSpec], ChatBackend]
    version: Callable[[], str]


def _start_vllm(spec: EngineSpec) -> ChatBackend:
    return VLLMChat(spec.path, chat_template_kwargs=spec.chat_template_kwargs, **spec.engine)


#: ``llm.engine`` keys the transformers backend reads; the others are vLLM's own
_TRANSFORMERS_ENGINE_KEYS = ("dtype", "max_model_len", "seed")


def _start_transformers(spec: EngineSpec) -> ChatBackend:
    from utilann.llm.transformers_engine import TransformersChat

    engine = spec.engine
    if int(engine.get("tensor_parallel_size") or 1) > 1:
        raise ValueError(
            "llm.backend transformers runs on one device; llm.engine.tensor_parallel_size "
            f"{engine['tensor_parallel_size']} needs llm.backend: vllm"
        )
    if engine.get("quantization"):
        raise ValueError(
            f"llm.engine.quantization {engine['quantization']!r} is a vLLM setting: the "
            "transformers backend loads the checkpoint as it is; use llm.backend: vllm"
        )
    unused = sorted(k for k in engine if k not in _TRANSFORMERS_ENGINE_KEYS)
    if unused:
        log.info("llm.engine settings only vLLM reads (not used here): %s", ", ".join(unused))
    return TransformersChat(
        spec.path,
        dtype=engine["dtype"],
        max_model_len=engine.get("max_model_len"),
        seed=int(engine.get("seed", 0)),
        chat_template_kwargs=spec.chat_template_kwargs,
        **spec.transformers,
    )


def transformers_version() -> str:
    """transformers' version and torch's (whose CPU kernels it runs), without importing them."""
    try:
        return f"{version('transformers')}+torch-{version('torch')}"
    except PackageNotFoundError:
        return "not-installed"


BACKENDS: dict[str, Backend] = {
    "vllm": Backend(_start_vllm, vllm_version),
    "transformers": Backend(_start_transformers, transformers_version),
}
"""Every LLM backend by its ``llm.backend`` name."""

BACKEND_CHOICES = ("auto", *BACKENDS)
"""What ``llm.backend`` may say."""


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(
            f"unknown LLM backend {name!r} (one of {list(BACKENDS)}; "
            "'auto' is resolved by utilann.llm.backends.resolve first)"
        )
    return BACKENDS[name]


def vllm_only_feature(spec: EngineSpec) -> str:
    """What of ``spec``'s job only vLLM does ('' if nothing): constrained decoding (its engine
    starts with a structured-outputs backend, :mod:`utilann.llm.grammar`). Under ``auto`` such
    a job gets vLLM on every machine; the transformers backend would refuse it."""
    return "constrained decoding" if spec.engine.get("structured_outputs_config") else ""


def choose_backend(
    requested: str, hw: Hardware, vllm_installed: bool, vllm_only: str = ""
) -> tuple[str, str]:
    """The backend ``requested`` (``llm.backend``) means on ``hw``, and why; ``vllm_only``
    names a feature of the job that only vLLM has (:func:`vllm_only_feature`).

    ``auto`` on a CPU follows the CPU's vector unit: without AVX-512, vLLM-CPU runs its
    fallback kernels (issue 14, an AVX2 EPYC: ~80 prompt and ~4.5 output tokens/s on the demo's
    RelSel prompts, i.e. ~25 minutes for the demo's 122k annotation prompt tokens alone), while
    PyTorch's fp32 GEMMs are fully vectorised on AVX2. With AVX-512 vLLM-CPU stays the
    default: on the 2-core development machine (AVX-512 + AMX) its bf16 kernels ran the demo's
    annotation calls at 0.46 prompts/s (450 prompt tokens/s),
    transformers 0.52x (bf16) and 0.17x (fp32) as fast there (README, "Benchmarks"). The AVX2
    side rests on issue 14's figure and an approximation (transformers fp32 limited to AVX2
    here: ~100 prompt tokens/s); measure on a real AVX2 CPU before relying on it.
    """
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"llm.backend must be one of {list(BACKEND_CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested, "asked"
    if not vllm_installed:
        return "transformers", "vLLM is not installed"
    if vllm_only:
        return "vllm", f"{vllm_only} needs vLLM"
    if hw.device == "cuda":
        return "vllm", "a GPU: vLLM's batching and kernels"
    if not hw.cpu_capability.upper().startswith("AVX512"):
        return "transformers", (
            f"this CPU ({hw.cpu_capability}) has no AVX-512, where vLLM-CPU's kernels are slow"
        )
    return "vllm", f"this CPU ({hw.cpu_capability}) runs vLLM-CPU's AVX-512 kernels"


def resolve(spec: EngineSpec, hw: Hardware | None = None) -> EngineSpec:
    """``spec`` with its backend and dtype decided for this machine (logged with the reasons)."""
    hw = hw or detect()
    backend, why = choose_backend(
        spec.backend, hw, vllm_version() != "not-installed", vllm_only_feature(spec)
    )
    requested = str(spec.engine.get("dtype", "auto"))
    dtype = resolve_llm_dtype(requested, hw)
    emulated = "emulates" in dtype.reason
    log.log(
        logging.WARNING if emulated else logging.INFO,
        "LLM backend %s -> %s (%s); dtype %s -> %s (%s) [%s]",
        spec.backend,
        backend,
        why,
        requested,
        dtype.torch_name,
        dtype.reason,
        hw.describe(),
    )
    return replace(spec, backend=backend, engine={**spec.engine, "dtype": dtype.torch_name})
