"""The content-keyed generation cache: keys, sharing between writers, SIGKILL durability."""

import os
import signal
import subprocess
import sys
import textwrap

from utilann.annotate.cache import GenerationCache, request_key
from utilann.llm import Generation

MESSAGES = [{"role": "user", "content": "[1] passage"}]


def test_key_covers_model_dtype_messages_and_sampling():
    base = request_key("m", "bfloat16", MESSAGES, {"temperature": 0, "max_tokens": 8})
    assert base == request_key("m", "bfloat16", MESSAGES, {"max_tokens": 8.0, "temperature": 0.0})
    assert base == request_key(
        "m", "bfloat16", MESSAGES, {"temperature": 0, "max_tokens": 8, "seed": None}
    )
    others = {
        request_key("m2", "bfloat16", MESSAGES, {"temperature": 0, "max_tokens": 8}),
        request_key("m", "float16", MESSAGES, {"temperature": 0, "max_tokens": 8}),
        request_key(
            "m",
            "bfloat16",
            [{"role": "user", "content": "[1] passage!"}],
            {"temperature": 0, "max_tokens": 8},
        ),
        request_key("m", "bfloat16", MESSAGES, {"temperature": 0, "max_tokens": 9}),
    }
    assert base not in others and len(others) == 4


def test_writers_share_entries(tmp_path):
    gen = Generation("My selection: [1]", 10, 5, "stop")
    with GenerationCache(tmp_path, "exp-a.shard-0") as a:
        a.put_many([("k1", "relsel", gen, 0.5)], model="m")
    with GenerationCache(tmp_path, "exp-b.shard-3") as b:
        assert b.get_many(["k1", "k2"]) == {"k1": (gen, 0.5)}
        assert b.count() == 0  # read from the other writer's file, nothing copied


def test_committed_chunks_survive_sigkill(tmp_path):
    """A writer killed in the middle of a transaction keeps every committed chunk."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from utilann.annotate.cache import GenerationCache
        from utilann.llm import Generation
        cache = GenerationCache({str(tmp_path)!r}, "w")
        cache.put_many([("done-%d" % i, "relsel", Generation("t", 1, 1, "stop"), 0.1)
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
