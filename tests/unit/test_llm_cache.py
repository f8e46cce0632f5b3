"""The LLM cache: the one key function, the model fingerprint, sharing between writers,
SIGKILL durability."""

import os
import signal
import sqlite3
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


GEN = Generation("My selection: [1]", 10, 5, "stop")


def fill(directory, writer, n, prefix="k"):
    with GenerationCache(directory, writer) as cache:
        cache.put_many([(f"{prefix}{i}", "relsel.v1", GEN, 0.5) for i in range(n)], model="m")


def quarantined(directory, name):
    return sorted(p.name for p in directory.glob(f"{name}.corrupt-*"))


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda p: p.write_bytes(b"not a database" * 100), "file is not a database"),
        (lambda p: os.truncate(p, p.stat().st_size // 2), "database disk image is malformed"),
    ],
    ids=["garbage", "truncated"],
)
def test_a_damaged_writer_file_is_quarantined_and_its_entries_regenerated(
    tmp_path, caplog, damage, problem
):
    fill(tmp_path, "a", 400)
    damage(tmp_path / "a.sqlite")
    with GenerationCache(tmp_path, "b") as cache:
        assert cache.get_many(["k0", "k399"]) == {}  # nothing of the damaged file is used
    aside = quarantined(tmp_path, "a.sqlite")
    assert len(aside) == 1 and not (tmp_path / "a.sqlite").exists()
    assert f"LLM cache file {tmp_path / 'a.sqlite'} is corrupt ({problem}): moved aside" in (
        caplog.text
    )
    assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["b.sqlite"]


def test_a_damaged_own_file_is_quarantined_when_opened(tmp_path, caplog):
    fill(tmp_path, "w", 3)
    (tmp_path / "w.sqlite").write_bytes(b"\0garbage" * 512)
    with GenerationCache(tmp_path, "w") as cache:
        assert cache.get_many(["k0"]) == {} and cache.count() == 0
        cache.put_many([("k0", "relsel.v1", GEN, 0.5)], model="m")
    assert "is corrupt (file is not a database): moved aside" in caplog.text
    assert len(quarantined(tmp_path, "w.sqlite")) == 1
    with GenerationCache(tmp_path, "w") as cache:
        assert cache.get_many(["k0"]) == {"k0": (GEN, 0.5)}  # the fresh file works


def test_a_damaged_file_of_a_running_writer_is_skipped_not_moved(tmp_path, caplog):
    fill(tmp_path, "a", 3)
    (tmp_path / "a.sqlite").write_bytes(b"not a database" * 100)
    holder = subprocess.Popen(  # holds writer a's lock, as a running job does
        [sys.executable, "-c", HOLD_LOCK.format(path=str(tmp_path / "a.sqlite.lock"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with GenerationCache(tmp_path, "b") as cache:
            assert cache.get_many(["k0"]) == {}
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "a.sqlite").exists() and not quarantined(tmp_path, "a.sqlite")
    assert "is corrupt (file is not a database) but its writer is still running" in caplog.text


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open({path!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_invalid_rows_are_reported_and_not_reused(tmp_path, caplog):
    fill(tmp_path, "a", 1, prefix="good")
    conn = sqlite3.connect(tmp_path / "a.sqlite")
    bad = {
        "blob-text": (b"\x00", 10, 5, "stop", 0.5),
        "negative": ("t", 10, -1, "stop", 0.5),
        "words": ("t", "many", 5, "stop", 0.5),
        "too-long": ("", 10, 0, "prompt_too_long", 0.0),
        "no-reason": ("t", 10, 5, "", 0.5),
        "inf-time": ("t", 10, 5, "stop", float("inf")),
    }
    with conn:
        conn.executemany(
            "INSERT INTO generations VALUES (?, 't', 'm', ?, ?, ?, ?, ?, 0)",
            [(key, *fields) for key, fields in bad.items()],
        )
    conn.close()
    with GenerationCache(tmp_path, "b") as cache:
        found = cache.get_many(["good0", *bad])
    assert found == {"good0": (GEN, 0.5)}
    for key in bad:
        assert f"LLM cache file {tmp_path / 'a.sqlite'}: entry {key} is invalid (" in caplog.text
    assert "output_tokens -1 is not an integer >= 0" in caplog.text
    assert "gen_seconds inf is not a finite number >= 0" in caplog.text
    assert (tmp_path / "a.sqlite").exists()  # the file is sound; only its bad rows are skipped


def test_an_invalid_row_is_regenerated_into_the_own_file(tmp_path):
    from utilann.llm.batch import CachedGenerator, Request

    class Echo:
        def chat(self, conversations, sampling):
            return [Generation("fresh", 3, 1, "stop") for _ in conversations]

    request = Request("t@0", [{"role": "user", "content": "q"}], SAMPLING)
    with GenerationCache(tmp_path, "w") as cache:
        generator = CachedGenerator(cache, IDENTITY, Echo, 4)
        key = generator.key(request)
        cache.put_many([(key, "t@0", Generation("old", 3, 1, "stop"), 0.1)], model="m")
        cache._own.execute("UPDATE generations SET output_tokens = -5")
        cache._own.commit()
        (outcome,) = generator.generate([request])
        assert outcome.generation.text == "fresh" and not outcome.from_cache
        assert cache.get_many([key]) == {
            key: (Generation("fresh", 3, 1, "stop"), outcome.gen_seconds)
        }


def test_a_foreign_sqlite_file_is_skipped(tmp_path):
    other = sqlite3.connect(tmp_path / "notes.sqlite")
    other.execute("CREATE TABLE notes (x)")
    other.close()
    (tmp_path / "empty.sqlite").touch()  # a writer's file in its first instant
    with GenerationCache(tmp_path, "w") as cache:
        assert cache.get_many(["k"]) == {}
    assert (tmp_path / "notes.sqlite").exists() and (tmp_path / "empty.sqlite").exists()


def test_the_same_writer_twice_writes_two_files(tmp_path, caplog):
    with GenerationCache(tmp_path, "w") as first, GenerationCache(tmp_path, "w") as second:
        assert first.path.name == "w.sqlite" and second.path != first.path
        assert second.path.name.startswith("w.") and second.path.name.endswith(
            f"-{os.getpid()}.sqlite"
        )
        first.put_many([("k1", "t", GEN, 0.5)], model="m")
        second.put_many([("k2", "t", GEN, 0.5)], model="m")
    assert "LLM cache" in caplog.text and "is in use by another running job" in caplog.text
    with GenerationCache(tmp_path, "w") as again:
        assert again.path.name == "w.sqlite"  # the lock was released with the cache
        assert sorted(again.get_many(["k1", "k2"])) == ["k1", "k2"]


CONCURRENT_WRITER = """
import sys
from utilann.llm.cache import GenerationCache
from utilann.llm.engine import Generation
directory, writer, tag, other = sys.argv[1:]
seen = 0
with GenerationCache(directory, writer) as cache:
    print(cache.path.name, flush=True)
    for chunk in range(40):
        cache.put_many(
            [(f"{tag}-{chunk}-{i}", "t", Generation(f"{tag} {chunk} {i}", 7, 3, "stop"), 0.1)
             for i in range(25)],
            model="m",
        )
        found = cache.get_many([f"{other}-{c}-{i}" for c in range(40) for i in range(25)])
        assert all(g.text == k.replace("-", " ") for k, (g, _) in found.items()), "corrupt read"
        seen = max(seen, len(found))
print(seen, flush=True)
"""


@pytest.mark.parametrize("same_writer", [False, True], ids=["two-writers", "same-writer"])
def test_two_processes_writing_concurrently_lose_nothing(tmp_path, same_writer):
    """Two jobs (two pool shards, or a rerun beside a stale job) write one cache directory at
    once, each reading the other's entries while they are being written."""
    writers = ["w", "w"] if same_writer else ["shard-0", "shard-1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path), writer, tag, other],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for writer, tag, other in zip(writers, ["a", "b"], ["b", "a"], strict=True)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    files = sorted(out.splitlines()[0] for out, _ in outputs)
    assert len(set(files)) == 2  # never one file shared by two processes
    if same_writer:
        assert files[0] == "w.sqlite" or files[1] == "w.sqlite"
        assert "is in use by another running job" in "".join(err for _, err in outputs)
    keys = [f"{t}-{c}-{i}" for t in "ab" for c in range(40) for i in range(25)]
    with GenerationCache(tmp_path, "check") as cache:
        found = cache.get_many(keys)
    assert len(found) == 2000
    assert all(g == Generation(k.replace("-", " "), 7, 3, "stop") for k, (g, _) in found.items())
    for name in files:
        conn = sqlite3.connect(tmp_path / name)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()


def test_every_llm_job_writes_the_same_engine_keys():
    assert replace(IDENTITY, backend="transformers").run_metadata() == {
        "model_revision": "sha256:abc",
        "backend": "transformers",
        "dtype": "bfloat16",
        "engine_version": "0.32.0",
    }
    # no job writes its own spelling of them (REPLUG's manifest once said vllm_version)
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "utilann"
    writers = [p for p in src.rglob("*.py") if '"vllm_version"' in p.read_text()]
    assert writers == []
