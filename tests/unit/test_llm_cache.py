"""The LLM cache: the one key function, the model fingerprint, sharing between writers,
SIGKILL durability."""

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from utilann.llm.cache import GenerationCache, ModelIdentity, model_revision, request_key
from utilann.llm.engine import EngineSpec, Generation

MESSAGES = [{"role": "user", "content": "[1] passage"}]
SAMPLING = {"temperature": 0, "max_tokens": 8}
IDENTITY = ModelIdentity(
    model="m",
    revision="sha256:abc",
    engine_version="0.32.0",
    dtype="bfloat16",
    tensor_parallel_size=1,
    quantization=None,
    chat_template_kwargs={},
)


def key(identity=IDENTITY, template="relsel@aa", sampling=SAMPLING, messages=MESSAGES):
    return request_key(identity, template, sampling, messages)


def test_numbers_compare_as_floats_and_none_is_unset():
    base = key()
    assert base == key(sampling={"max_tokens": 8.0, "temperature": 0.0})
    assert base == key(sampling={**SAMPLING, "seed": None})
    assert base == key(identity=replace(IDENTITY, chat_template_kwargs={"x": None}))
    nested = {"structured_outputs": {"choice": ["a", "b"], "max": 1}}
    assert key(sampling=nested) == key(
        sampling={"structured_outputs": {"max": 1.0, "choice": ["a", "b"]}}
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"identity": replace(IDENTITY, model="m2")},
        {"identity": replace(IDENTITY, revision="sha256:abd")},
        {"identity": replace(IDENTITY, engine_version="0.33.0")},
        {"identity": replace(IDENTITY, dtype="float16")},
        {"identity": replace(IDENTITY, tensor_parallel_size=2)},
        {"identity": replace(IDENTITY, quantization="gptq")},
        {"identity": replace(IDENTITY, chat_template_kwargs={"enable_thinking": False})},
        {"template": "relsel@ab"},
        {"template": "utilsel@aa"},
        {"sampling": {**SAMPLING, "max_tokens": 9}},
        {"sampling": {**SAMPLING, "top_p": 0.9}},
        {"messages": [{"role": "user", "content": "[1] passage!"}]},
        {"messages": [{"role": "system", "content": "[1] passage"}]},
    ],
    ids=lambda c: next(iter(c)) + ":" + repr(next(iter(c.values())))[:40],
)
def test_every_component_changes_the_key(changed):
    assert key(**changed) != key()


def test_key_is_a_sha256_hex_digest_stable_across_processes():
    code = (
        "from utilann.llm.cache import ModelIdentity, request_key;"
        "print(request_key(ModelIdentity('m', 'r', 'v', 'bfloat16'), 't.v1', {'temperature': 0},"
        " [{'role': 'user', 'content': 'hi'}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = request_key(
        ModelIdentity("m", "r", "v", "bfloat16"),
        "t.v1",
        {"temperature": 0.0},
        [{"role": "user", "content": "hi"}],
    )
    assert out.stdout.strip() == here and len(here) == 64


def test_there_is_one_key_function():
    """The RAG stage's own prompt_key and the annotation-only request_key are gone."""
    import utilann.annotate
    import utilann.rag.job
    import utilann.rag.prompts

    for module in (utilann.rag.prompts, utilann.rag.job):
        assert not hasattr(module, "prompt_key")
    with pytest.raises(ModuleNotFoundError):
        import utilann.annotate.cache  # noqa: F401


def test_model_fingerprint_follows_the_directory_content(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "model.safetensors").write_bytes(b"\0" * 100)
    first = model_revision(str(model))
    assert first.startswith("sha256:") and first == model_revision(str(model))
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("x")
    assert model_revision(str(model)) == first  # hub download metadata does not count
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for f in ("config.json", "model.safetensors"):
        (copy / f).write_bytes((model / f).read_bytes())
    assert model_revision(str(copy)) == first  # a copy is the same model
    (model / "config.json").write_text('{"hidden_size": 16}')
    assert model_revision(str(model)) != first
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    assert model_revision(str(model)) != first


def test_unresolvable_hub_id_is_unpinned_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    assert model_revision("org/not-a-cached-model") == "hf-unpinned:main"
    assert model_revision("org/not-a-cached-model", "v2.0") == "hf-unpinned:v2.0"
    assert "cannot resolve the revision of org/not-a-cached-model" in caplog.text


def test_identity_of_an_engine_spec(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    spec = EngineSpec(
        "smollm",
        str(tmp_path),
        {"dtype": "bfloat16", "tensor_parallel_size": 2, "enforce_eager": True},
        {"VLLM_CPU_KVCACHE_SPACE": "1"},
        {"enable_thinking": False},
    )
    identity = ModelIdentity.resolve(spec)
    assert identity.model == "smollm" and identity.revision == model_revision(str(tmp_path))
    assert identity.dtype == "bfloat16" and identity.tensor_parallel_size == 2
    assert identity.chat_template_kwargs == {"enable_thinking": False}
    assert identity.engine_version  # the installed vLLM's version (or "not-installed")
    # engine settings that do not change outputs (eager mode, env) are not part of it
    eager = ModelIdentity.resolve(replace(spec, engine={**spec.engine, "enforce_eager": False}))
    assert eager == identity


def test_writers_share_entries(tmp_path):
    gen = Generation("My selection: [1]", 10, 5, "stop")
    with GenerationCache(tmp_path, "exp-a.shard-0") as a:
        a.put_many([("k1", "relsel.v1", gen, 0.5)], model="m")
    with GenerationCache(tmp_path, "exp-b.shard-3") as b:
        assert b.get_many(["k1", "k2"]) == {"k1": (gen, 0.5)}
        assert b.count() == 0  # read from the other writer's file, nothing copied


def test_committed_chunks_survive_sigkill(tmp_path):
    """A writer killed in the middle of a transaction keeps every committed chunk."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from utilann.llm.cache import GenerationCache
        from utilann.llm.engine import Generation
        cache = GenerationCache({str(tmp_path)!r}, "w")
        cache.put_many([("done-%d" % i, "relsel.v1", Generation("t", 1, 1, "stop"), 0.1)
                        for i in range(3)], model="m")
        conn = cache._own
        conn.execute("BEGIN")
        conn.execute("INSERT INTO generations VALUES ('half', 's', 'm', 't', 1, 1, 'stop', 0, 0)")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -signal.SIGKILL
    with GenerationCache(tmp_path, "w") as cache:
        found = cache.get_many(["done-0", "done-1", "done-2", "half"])
    assert sorted(found) == ["done-0", "done-1", "done-2"]


def test_foreign_files_are_ignored(tmp_path):
    (tmp_path / "junk.sqlite").write_bytes(b"not a database")
    with GenerationCache(tmp_path, "w") as cache:
        assert cache.get_many(["k"]) == {}
    assert os.path.exists(tmp_path / "w.sqlite")
