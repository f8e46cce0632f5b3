"""One content-keyed, crash-safe store of LLM generations shared by every step and experiment.

Key (:func:`request_key`) = SHA-256 of everything that decides a completion: the model and
its revision (a content fingerprint of a local model directory, the commit of a hub model),
the engine version, dtype, tensor-parallel size and quantization, the chat-template
variables, the prompt template (name and content hash), the canonical sampling parameters,
the rendered conversation (which holds the template wording, query, passage texts and any
pseudo-answer) and, for a request that scores a continuation instead of generating one
(REPLUG's answer likelihoods), that mode. So a rerun, a resume after a crash, or another
experiment asking the same question never pays for the same call twice, while a new model
revision, engine, wording or decoding misses the cache exactly where it matters.

Layout: one SQLite file per writer (``<cache_dir>/<writer>.sqlite``; a writer is one LLM job,
e.g. ``demo.shard-0`` or ``rag.demo.nq-oracle.test``). A job writes only its own file, so
parallel jobs never contend for a lock (safe on cluster file systems too), and it reads every
other file in the directory read-only. Each chunk of generations is committed in one
transaction with ``synchronous=FULL``: after a SIGKILL the file holds every committed chunk
and SQLite rolls the interrupted one back on the next open.

The cache directory (config ``llm.cache_dir``) is a side store, not a Snakemake output:
Snakemake never deletes it when a job fails, which is the point. Delete it by hand to force
regeneration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from utilann.llm.engine import Conversation, EngineSpec, Generation, Sampling, vllm_version

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    template TEXT NOT NULL,
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
#: What a request asks of the engine: a completion, or the score of a given continuation.
MODES = ("generate", "score")
#: files of a model directory up to this size are fingerprinted by content (configs,
#: tokenizer, chat template), larger ones (weights) by name and size
_HASHED_FILE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class ModelIdentity:
    """Everything about the engine that changes what it generates for a given prompt.

    Build it with :meth:`resolve` in the job (never at Snakemake parse time: resolving a hub
    model's revision may look at the local hub cache or the hub).
    """

    model: str
    revision: str
    engine_version: str
    dtype: str
    tensor_parallel_size: int = 1
    quantization: str | None = None
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, spec: EngineSpec) -> ModelIdentity:
        """The identity of the engine ``spec`` starts."""
        engine = spec.engine
        return cls(
            model=spec.model,
            revision=model_revision(spec.path, engine.get("revision")),
            engine_version=vllm_version(),
            dtype=str(engine.get("dtype", "auto")),
            tensor_parallel_size=int(engine.get("tensor_parallel_size") or 1),
            quantization=engine.get("quantization"),
            chat_template_kwargs=dict(spec.chat_template_kwargs),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chat_template_kwargs": dict(self.chat_template_kwargs)}


def request_key(
    identity: ModelIdentity,
    template: str,
    sampling: Sampling,
    messages: Conversation,
    mode: str = "generate",
) -> str:
    """The content key of one chat request (stable across runs, machines and experiments).

    Args:
        identity: the engine (:class:`ModelIdentity`).
        template: the fingerprint (``name@sha256``) of the template that rendered ``messages``.
        sampling: decoding parameters; numbers are compared as floats and ``None`` values
            dropped, so ``temperature: 0`` and ``0.0``, or an unset and a null ``seed``, are
            the same request.
        messages: the rendered conversation.
        mode: ``generate`` (a completion) or ``score`` (the log-probabilities of the last,
            assistant message: :meth:`~utilann.llm.engine.VLLMChat.score`). Only a
            non-default mode enters the key, so every generation key is what it always was.
    """
    if mode not in MODES:
        raise ValueError(f"request mode must be one of {MODES}, got {mode!r}")
    content: dict[str, Any] = {
        "identity": _canonical(identity.as_dict()),
        "template": template,
        "sampling": _canonical(sampling),
        "messages": [dict(m) for m in messages],
    }
    if mode != "generate":
        content["mode"] = mode
    payload = json.dumps(
        content,
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


def model_revision(model_path: str, revision: str | None = None) -> str:
    """What version of the weights ``model_path`` names, for cache keys.

    * a local directory: ``sha256:<hex>`` over the relative path and size of every file, and
      the content of every file up to 16 MiB (configs, tokenizer, chat template) - re-preparing
      or editing the model changes it, copying it elsewhere does not;
    * a hub id: ``hf:<commit>`` of the locally cached snapshot of ``revision`` (default
      ``main``), else of the hub's current commit; when neither can be found (offline, not yet
      downloaded) ``hf-unpinned:<revision>``, with a warning: the keys are then not pinned to
      a commit, and the first run that can resolve it generates anew.
    """
    path = Path(model_path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue  # hub download metadata, editor files
            size = file.stat().st_size
            digest.update(f"{rel}\0{size}\0".encode())
            if size <= _HASHED_FILE_BYTES:
                digest.update(hashlib.sha256(file.read_bytes()).digest())
        return f"sha256:{digest.hexdigest()}"
    wanted = revision or "main"
    try:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(model_path, revision=wanted, local_files_only=True)
        return f"hf:{Path(snapshot).name}"
    except Exception:  # not in the local hub cache (or no huggingface_hub): ask the hub
        pass
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            from huggingface_hub import model_info

            return f"hf:{model_info(model_path, revision=wanted).sha}"
        except Exception as err:  # offline, unknown id, no access
            log.debug("no hub revision for %s: %s", model_path, err)
    log.warning(
        "cannot resolve the revision of %s (not a local directory, not in the hub cache, hub "
        "unreachable): LLM cache keys use %r until it can be resolved",
        model_path,
        wanted,
    )
    return f"hf-unpinned:{wanted}"


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
        """Durably store ``(key, template, generation, gen_seconds)`` entries in one transaction.

        ``template`` and ``model`` are stored for people inspecting the store; lookups use the
        key only.
        """
        now = time.time()
        with self._own:
            self._own.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        template,
                        model,
                        g.text,
                        g.prompt_tokens,
                        g.output_tokens,
                        g.finish_reason,
                        seconds,
                        now,
                    )
                    for key, template, g, seconds in entries
                ],
            )

    def count(self) -> int:
        """Entries in this writer's own file."""
        return self._own.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
