"""Measured or stated LLM throughput: what turns a token count into engine time.

One engine's throughput is two rates: prompt tokens prefilled per second and output tokens
decoded per second, both over a batch as the annotation jobs send it (batched prompts,
continuous batching). ``benchmarks/annotation_throughput.py --throughput-out FILE`` measures
them and writes a :class:`Throughput` as JSON; the budget planner (:mod:`utilann.budget`)
reads such a file, or takes rates a user states for hardware they cannot measure here (the
paper's 8 x A800 node), and always says which it used.

File format (JSON object): ``prefill_tokens_per_s``, ``decode_tokens_per_s`` (required), and
what the figures are about: ``device`` (``cpu`` / ``cuda``), ``device_name``, ``gpus``,
``model``, ``dtype``, ``backend``, ``source`` (how they were obtained), ``load_average``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from utilann.io import write_json


@dataclass(frozen=True)
class Throughput:
    """Prefill and decode rates of one engine, with what they were measured on."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    source: str
    device: str = ""
    device_name: str = ""
    gpus: int = 0
    model: str = ""
    dtype: str = ""
    backend: str = ""
    load_average: float | None = None

    def __post_init__(self) -> None:
        for name in ("prefill_tokens_per_s", "decode_tokens_per_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"throughput {name} must be a positive number, got {value!r}")

    def seconds(self, prefill_tokens: float, decode_tokens: float) -> float:
        """Engine seconds to prefill and decode that many tokens (the two phases add up:
        a batch's prefill and decode steps share the same device)."""
        return prefill_tokens / self.prefill_tokens_per_s + decode_tokens / self.decode_tokens_per_s

    def describe(self) -> str:
        """One line saying what the rates are and where they come from."""
        about = ", ".join(
            str(v)
            for v in (self.model, self.dtype, self.backend, self.device_name or self.device)
            if v
        )
        load = f", load average {self.load_average:.1f}" if self.load_average is not None else ""
        return (
            f"{self.prefill_tokens_per_s:,.0f} prompt tokens/s, {self.decode_tokens_per_s:,.1f} "
            f"output tokens/s ({self.source}{'; ' + about if about else ''}{load})"
        )


def read_throughput(path: str | os.PathLike[str]) -> Throughput:
    """A throughput file (module docstring); errors name the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"throughput file {path} not found (benchmarks/annotation_throughput.py "
            "--throughput-out writes one)"
        ) from err
    except json.JSONDecodeError as err:
        raise ValueError(f"throughput file {path}: not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"throughput file {path}: expected a JSON object")
    known = {f.name for f in fields(Throughput)}
    missing = [k for k in ("prefill_tokens_per_s", "decode_tokens_per_s") if k not in data]
    if missing:
        raise ValueError(f"throughput file {path}: missing {missing}")
    values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
    values.setdefault("source", f"measured, {path}")
    try:
        return Throughput(**values)
    except ValueError as err:
        raise ValueError(f"throughput file {path}: {err}") from err


def write_throughput(throughput: Throughput, path: str | os.PathLike[str]) -> Path:
    """Write ``throughput`` as a throughput file (atomically)."""
    return write_json(asdict(throughput), path)
