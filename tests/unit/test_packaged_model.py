"""The packaged LLM's conversion cache (utilann.llm.packaged): keyed by what the converted
files depend on and copied into place without converting again. The real conversion into the
cache and the copy from it are checked on the real model in the annotation e2e test."""

from __future__ import annotations

import pytest

from utilann.llm import packaged
from utilann.llm.packaged import conversion_key, prepare_packaged_model


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "Tiny.Q4.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)))
    return path


def test_the_key_follows_the_bytes_and_the_dtype(gguf):
    key = conversion_key(gguf, "bfloat16")
    assert key.startswith("Tiny.Q4-bfloat16-") and key == conversion_key(gguf, "bfloat16")
    assert conversion_key(gguf, "float32") != key
    gguf.write_bytes(gguf.read_bytes() + b"!")
    assert conversion_key(gguf, "bfloat16") != key


def test_a_cached_conversion_is_copied_without_converting(gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cached = cache / conversion_key(gguf, "bfloat16")
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")

    def never(*args):
        raise AssertionError("converted although the cache holds the model")

    monkeypatch.setattr(packaged, "prepare_gguf_model", never)
    out = tmp_path / "models" / "tiny"
    assert prepare_packaged_model(gguf, out, "bfloat16", cache) is True
    assert (out / "config.json").read_text() == "{}"
    assert not out.is_symlink() and not (out.parent / ".tiny.tmp").exists()
