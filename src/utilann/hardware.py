"""What this machine can compute fast, and the number format a job therefore runs in.

Machines of the same "kind" differ: on a CPU with native bf16 units (AVX512-BF16, AMX) bf16
encoding is ~1.8x faster than fp32, while on an AVX2-only CPU PyTorch emulates bf16 and the
same encoding is ~6x *slower* (issue 14: all-MiniLM-L6-v2, 64 passages, 39.1 s vs 6.4 s). So
``precision: auto`` is decided per machine, at job time, by :func:`resolve_precision`:

=========  ===========================================  ================================
asked      CUDA                                         CPU
=========  ===========================================  ================================
``auto``   bf16 if the GPU has bf16 (Ampere+), else     bf16 if the CPU has native bf16,
           fp32 (fp16 only when asked: it needs loss    else fp32
           scaling and overflows where bf16 does not)
``bf16``   bf16 (warns when the GPU emulates it)        bf16 (warns when emulated: slow)
``fp16``   fp16                                         fp32, with a warning: fp16 is a
                                                        GPU setting here (its loss scaler
                                                        is CUDA's), and a config written
                                                        for GPUs must still run on a CPU
``fp32``   fp32                                         fp32
=========  ===========================================  ================================

The LLM engine's ``llm.engine.dtype`` (vLLM's names: ``auto``, ``float32``, ``bfloat16``,
``float16``) follows the same table through :func:`resolve_llm_dtype`, with one difference:
``auto`` on a GPU without bf16 is fp16, as vLLM's own ``auto`` is (inference has no loss scale
to overflow).

The rule's params keep what was *asked* (``auto``), so moving a workflow between machines
does not rerun it; what was *chosen* changes the vectors slightly (cosine >= 0.9999 for bf16),
so it is logged and recorded in every output's metadata instead.

This module imports torch only inside :func:`detect`: the Snakefile imports the settings
(and :data:`PRECISIONS`) at parse time, which must stay fast.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""What a config may ask for (``dense.precision``, ``training.defaults.precision``)."""

LLM_DTYPES = {"auto": "auto", "float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
"""``llm.engine.dtype`` values (vLLM's and torch's names) and the precision each asks for."""


@dataclass(frozen=True)
class Hardware:
    """The capabilities that decide a precision (injected as a value in tests).

    Attributes:
        device: ``cuda`` or ``cpu``, where the job computes.
        cpu_model: the CPU's name (``lscpu``'s "Model name").
        cpu_capability: ``torch.backends.cpu.get_cpu_capability()`` (``AVX2``, ``AVX512``, ...).
        cpu_bf16_units: native bf16 instructions found: ``AMX``, ``AVX512-BF16`` (x86) or
            ``ARM-BF16``; empty when bf16 would be emulated.
        gpu_name: the CUDA device's name, None on CPU.
        gpu_bf16: the GPU computes bf16 natively (compute capability >= 8.0).
    """

    device: str
    cpu_model: str = "unknown CPU"
    cpu_capability: str = "DEFAULT"
    cpu_bf16_units: tuple[str, ...] = ()
    gpu_name: str | None = None
    gpu_bf16: bool = False

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 is computed natively on the job's device."""
        return self.gpu_bf16 if self.device == "cuda" else bool(self.cpu_bf16_units)

    def describe(self) -> str:
        """One line naming the device and what it can do (for logs and benchmark output)."""
        units = ", ".join(self.cpu_bf16_units) or "none"
        cpu = f"{self.cpu_model}, capability {self.cpu_capability}, native bf16: {units}"
        if self.device == "cuda":
            return f"cuda ({self.gpu_name}, bf16: {'yes' if self.gpu_bf16 else 'no'}); cpu {cpu}"
        return f"cpu ({cpu})"


@dataclass(frozen=True)
class Precision:
    """A resolved precision: what was asked, what runs, and why (one log line)."""

    requested: str
    name: str
    reason: str

    @property
    def dtype(self) -> Any:  # torch.dtype, imported lazily
        """The torch dtype of :attr:`name`."""
        import torch

        return getattr(torch, self.torch_name)

    @property
    def torch_name(self) -> str:
        """The dtype's name in torch, vLLM and transformers (``float32``, ``bfloat16``, ...)."""
        return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.name]


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model name") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_bf16_units(torch: Any) -> tuple[str, ...]:
    """Native bf16 instruction sets of this CPU, as PyTorch's cpuinfo sees them.

    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone is not enough: on x86 it is true for
    any AVX512 CPU (oneDNN then converts to fp32 per instruction), so the AVX512-BF16 and AMX
    flags decide there; on Arm it is true exactly when the CPU has the BF16 extension.
    """
    cpu = torch.cpu
    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: bf16 is emulated
        onednn_bf16 = False
    if not onednn_bf16:
        return ()
    if platform.machine().lower() in ("aarch64", "arm64"):
        return ("ARM-BF16",)
    units = []
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        units.append("AMX")
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        units.append("AVX512-BF16")
    return tuple(units)


def detect(device: Any = None) -> Hardware:
    """The capabilities of ``device`` (default: the first GPU if any, else the CPU)."""
    import torch

    kind = (
        torch.device(device).type
        if device is not None
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    gpu_name, gpu_bf16 = None, False
    if kind == "cuda":
        index = torch.device(device).index if device is not None else None
        gpu_name = torch.cuda.get_device_name(index)
        gpu_bf16 = torch.cuda.get_device_capability(index) >= (8, 0)
    return Hardware(
        device=kind,
        cpu_model=cpu_model_name(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_bf16_units=_cpu_bf16_units(torch),
        gpu_name=gpu_name,
        gpu_bf16=gpu_bf16,
    )


def resolve_precision(requested: str, hw: Hardware) -> Precision:
    """The precision a job asked for ``requested`` runs in on ``hw`` (table in module doc)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    where = "GPU" if hw.device == "cuda" else f"CPU ({hw.cpu_capability})"
    if requested == "fp32":
        return Precision(requested, "fp32", "asked")
    if requested == "fp16":
        if hw.device == "cuda":
            return Precision(requested, "fp16", "asked")
        return Precision(requested, "fp32", "fp16 needs CUDA; this job runs on the CPU")
    if requested == "bf16":
        if hw.native_bf16:
            return Precision(requested, "bf16", f"asked; native on this {where}")
        return Precision(requested, "bf16", f"asked, but this {where} emulates bf16: slow")
    if hw.native_bf16:
        return Precision(requested, "bf16", f"this {where} computes bf16 natively")
    return Precision(requested, "fp32", f"this {where} has no native bf16 (emulated: slower)")


def resolve_llm_dtype(requested: str, hw: Hardware) -> Precision:
    """The dtype an LLM engine asked for ``requested`` (``llm.engine.dtype``) runs in on ``hw``.

    The encoding/training table (module doc), except ``auto`` on a GPU without bf16: fp16.
    """
    if requested not in LLM_DTYPES:
        raise ValueError(f"llm.engine.dtype must be one of {list(LLM_DTYPES)}, got {requested!r}")
    chosen = resolve_precision(LLM_DTYPES[requested], hw)
    if requested == "auto" and hw.device == "cuda" and chosen.name == "fp32":
        return Precision(requested, "fp16", "this GPU has no bf16; fp16 needs no loss scale here")
    return Precision(requested, chosen.name, chosen.reason)


def choose_precision(requested: str, device: Any = None, what: str = "compute") -> Precision:
    """Detect the hardware, resolve ``requested`` and log the choice (a warning when the
    choice is not what was asked, or is emulated)."""
    hw = detect(device)
    chosen = resolve_precision(requested, hw)
    slow = "emulates" in chosen.reason or (requested != "auto" and chosen.name != requested)
    log.log(
        logging.WARNING if slow else logging.INFO,
        "%s precision %s -> %s: %s [%s]",
        what,
        requested,
        chosen.name,
        chosen.reason,
        hw.describe(),
    )
    return chosen
