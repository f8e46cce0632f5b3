"""A content-keyed, crash-safe store of LLM generations shared by all experiments.

Key = SHA-256 of the exact request: model, dtype, rendered chat messages (which contain the
template wording, query, passage ids' texts and pseudo-answer) and sampling parameters. So a
rerun, a resume after a crash, or another experiment asking the same question never pays for
the same call twice, and any change of wording or decoding misses the cache exactly where it
matters.

Layout: one SQLite file per writer (``<cache_dir>/<writer>.sqlite``; a writer is one annotation
job, e.g. ``demo.shard-0``). A job writes only its own file, so parallel jobs never contend for
a lock (safe on cluster file systems too), and it reads every other file in the directory
read-only. Each chunk of generations is committed in one transaction with
``synchronous=FULL``: after a SIGKILL the file holds every committed chunk and SQLite rolls the
interrupted one back on the next open.

The cache directory is a side store, not a Snakemake output: Snakemake never deletes it when a
job fails, which is the point. Delete it by hand to force regeneration.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from utilann.llm import Generation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    gen_seconds REAL NOT NULL,
    created_at REAL NOT NULL
)
"""
_LOOKUP_BATCH = 500


def request_key(
    model: str, dtype: str, messages: Sequence[Mapping[str, str]], sampling: Mapping[str, Any]
) -> str:
    """The content key of one chat request (stable across runs, machines and experiments).

    Numbers in ``sampling`` are compared as floats, so ``temperature: 0`` and ``0.0`` in two
    configs are the same request.
    """
    payload = json.dumps(
        {
            "model": model,
            "dtype": dtype,
            "messages": list(messages),
            "sampling": _canonical(sampling),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


class GenerationCache:
    """Read every writer's file in ``directory``; append to ``<writer>.sqlite`` only."""

    def __init__(self, directory: str | Path, writer: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{writer}.sqlite"
        self._own = sqlite3.connect(self.path, timeout=60)
        self._own.execute("PRAGMA journal_mode=DELETE")
        self._own.execute("PRAGMA synchronous=FULL")
        self._own.execute(_SCHEMA)
        self._own.commit()

    def close(self) -> None:
        self._own.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readers(self) -> Iterable[sqlite3.Connection]:
        yield self._own
        for other in sorted(self.directory.glob("*.sqlite")):
            if other.resolve() == self.path.resolve():
                continue
            conn = sqlite3.connect(f"file:{other}?mode=ro", uri=True, timeout=60)
            try:
                yield conn
            finally:
                conn.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[Generation, float]]:
        """Cached ``(generation, gen_seconds)`` for those of ``keys`` that are stored."""
        found: dict[str, tuple[Generation, float]] = {}
        wanted = list(dict.fromkeys(keys))
        for conn in self._readers():
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            for start in range(0, len(missing), _LOOKUP_BATCH):
                batch = missing[start : start + _LOOKUP_BATCH]
                try:
                    rows = conn.execute(
                        "SELECT key, text, prompt_tokens, output_tokens, finish_reason, "
                        "gen_seconds "
                        f"FROM generations WHERE key IN ({','.join('?' * len(batch))})",
                        batch,
                    ).fetchall()
                except sqlite3.DatabaseError:  # a foreign or unfinished file: skip it
                    break
                for key, text, p_tok, o_tok, finish, seconds in rows:
                    found[key] = (Generation(text, p_tok, o_tok, finish), seconds)
        return found

    def put_many(self, entries: Sequence[tuple[str, str, Generation, float]], model: str) -> None:
        """Durably store ``(key, step, generation, gen_seconds)`` entries in one transaction."""
        now = time.time()
        with self._own:
            self._own.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        step,
                        model,
                        g.text,
                        g.prompt_tokens,
                        g.output_tokens,
                        g.finish_reason,
                        seconds,
                        now,
                    )
                    for key, step, g, seconds in entries
                ],
            )

    def count(self) -> int:
        """Entries in this writer's own file."""
        return self._own.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
