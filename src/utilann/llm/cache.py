"""One content-keyed, crash-safe store of LLM generations shared by every step and experiment.

Key (:func:`request_key`) = SHA-256 of everything that decides a completion: the model and
its revision (a content fingerprint of a local model directory, the commit of a hub model),
the backend (vLLM or transformers: their kernels differ, so greedy outputs can differ at
numerical ties) and its version, the dtype the engine really runs in (``auto`` resolved on
the job's machine), tensor-parallel size and quantization, the chat-template
variables, the prompt template (name and content hash), the canonical sampling parameters,
the rendered conversation (which holds the template wording, query, passage texts and any
pseudo-answer) and, for a request that scores a continuation instead of generating one
(REPLUG's answer likelihoods), that mode. So a rerun, a resume after a crash, or another
experiment asking the same question never pays for the same call twice, while a new model
revision, engine, wording or decoding misses the cache exactly where it matters.

Layout: one SQLite file per writer (``<cache_dir>/<writer>.sqlite``; a writer is one LLM job,
e.g. ``demo.shard-0`` or ``rag.demo.nq-oracle.test``). A job writes only its own file, which it
holds a lock on (a second process with the same writer gets a file of its own, see
:class:`GenerationCache`), so parallel jobs never write one file, and it reads every other
file in the directory read-only, after checking it (damaged files are quarantined). Each
chunk of generations is committed in one transaction with ``synchronous=FULL``: after a
SIGKILL the file holds every committed chunk and SQLite rolls the interrupted one back on the
next open.

The cache directory (config ``llm.cache_dir``) is a side store, not a Snakemake output:
Snakemake never deletes it when a job fails, which is the point. Delete it by hand to force
regeneration.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from utilann.llm.engine import PROMPT_TOO_LONG, Conversation, EngineSpec, Generation, Sampling

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
_COLUMNS = (
    "key",
    "template",
    "model",
    "text",
    "prompt_tokens",
    "output_tokens",
    "finish_reason",
    "gen_seconds",
    "created_at",
)
#: problems of a file that is not ours rather than damaged (skipped, never quarantined)
_SKIP = "not an LLM cache"
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
    backend: str = "vllm"

    @classmethod
    def resolve(cls, spec: EngineSpec) -> ModelIdentity:
        """The identity of the engine ``spec`` starts; ``spec`` is resolved for this machine
        (:func:`utilann.llm.backends.resolve`): a key must hold what runs, not ``auto``."""
        from utilann.llm.backends import get_backend

        engine = spec.engine
        dtype = str(engine.get("dtype", "auto"))
        if spec.backend == "auto" or dtype == "auto":
            raise ValueError(
                f"unresolved engine (backend {spec.backend!r}, dtype {dtype!r}): "
                "call utilann.llm.backends.resolve first"
            )
        return cls(
            model=spec.model,
            revision=model_revision(spec.path, engine.get("revision")),
            engine_version=get_backend(spec.backend).version(),
            dtype=dtype,
            tensor_parallel_size=int(engine.get("tensor_parallel_size") or 1),
            quantization=engine.get("quantization"),
            chat_template_kwargs=dict(spec.chat_template_kwargs),
            backend=spec.backend,
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chat_template_kwargs": dict(self.chat_template_kwargs)}

    def run_metadata(self) -> dict[str, str]:
        """What ran, for every LLM job's table metadata and manifest (one set of key names):
        the model's revision, the backend, dtype and engine version on the job's machine."""
        return {
            "model_revision": self.revision,
            "backend": self.backend,
            "dtype": self.dtype,
            "engine_version": self.engine_version,
        }


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
    """Read every writer's file in ``directory``; append to ``<writer>.sqlite`` only.

    **One process per file.** A writer holds an exclusive lock on ``<writer>.sqlite.lock``
    (``flock``) while its cache is open. A second process that asks for the same writer (a
    rerun while a stale job still runs, a duplicated job) does not share the file: it writes
    ``<writer>.<host>-<pid>.sqlite`` instead, with a warning, and both sets of entries are read
    by every later job like any other writer's.

    **Nothing corrupt is reused.** Every file is checked (``PRAGMA quick_check`` and the
    table's columns) before it is first read, and every row when it is read:

    * a file that is not a database or fails the check (garbage bytes, truncated, a damaged
      page) is *quarantined*: renamed to ``<name>.corrupt-<UTC time>`` beside the others (kept
      for inspection, never read again) with a warning naming the file and the problem; when
      its writer is still running (its lock is held) it is only skipped;
    * a row whose fields are invalid (wrong types, negative token counts, a non-finite time,
      an empty or uncacheable ``finish_reason``) is reported with its file and key and treated
      as a miss: regenerated and stored in this writer's file;
    * a file that is valid SQLite but has no ``generations`` table (another tool's, or a
      writer's file in its first instant) is skipped; a file locked for longer than the busy
      timeout too: a miss costs a regeneration, never a wrong answer.

    **Read-only** with ``writer=None`` (the budget planner asking what is cached): no file of
    its own, nothing created; :meth:`put_many` refuses.
    """

    def __init__(self, directory: str | Path, writer: str | None) -> None:
        self.directory = Path(directory)
        self._readable_files: dict[Path, bool] = {}  # checked once per open cache
        if writer is None:
            self.path: Path | None = None
            self._own: sqlite3.Connection | None = None
            self._lock: int | None = None
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path, self._lock = _claim(self.directory, writer)
        problem = _file_problem(self.path) if self.path.exists() else None
        if problem and not problem.startswith(_SKIP):  # damaged: we hold its lock
            self._quarantine(self.path, problem)
        self._own = sqlite3.connect(self.path, timeout=60)
        self._own.execute("PRAGMA journal_mode=DELETE")
        self._own.execute("PRAGMA synchronous=FULL")
        self._own.execute(_SCHEMA)
        self._own.commit()

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            os.close(self._lock)  # releases the flock

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readable(self, other: Path) -> bool:
        """Whether another writer's file may be read (checked once; a damaged one is
        quarantined, see the class doc)."""
        if other not in self._readable_files:
            problem = _file_problem(other)
            if problem and problem.startswith(_SKIP):
                log.info("LLM cache: skipping %s (%s)", other, problem)
            elif problem:
                self._quarantine(other, problem)
            self._readable_files[other] = problem is None
        return self._readable_files[other]

    def _quarantine(self, path: Path, problem: str) -> None:
        """Rename a damaged file aside, unless another running writer still holds it."""
        if path != self.path and not _unlocked(path):
            log.warning(
                "LLM cache file %s is corrupt (%s) but its writer is still running: not read "
                "(its entries are regenerated)",
                path,
                problem,
            )
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        path.rename(aside)
        journal = path.with_name(path.name + "-journal")
        if journal.exists():  # a hot journal belongs to the damaged file: keep them together
            journal.rename(aside.with_name(aside.name + "-journal"))
        log.warning(
            "LLM cache file %s is corrupt (%s): moved aside to %s; its entries are regenerated",
            path,
            problem,
            aside.name,
        )

    def _readers(self) -> Iterable[tuple[Path, sqlite3.Connection]]:
        if self._own is not None:
            yield self.path, self._own
        for other in sorted(self.directory.glob("*.sqlite")):
            if other == self.path or not self._readable(other):
                continue
            conn = sqlite3.connect(f"file:{other}?mode=ro", uri=True, timeout=60)
            try:
                yield other, conn
            finally:
                conn.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[Generation, float]]:
        """Cached ``(generation, gen_seconds)`` for those of ``keys`` that are stored and valid."""
        found: dict[str, tuple[Generation, float]] = {}
        wanted = list(dict.fromkeys(keys))
        for path, conn in self._readers():
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            try:
                for start in range(0, len(missing), _LOOKUP_BATCH):
                    batch = missing[start : start + _LOOKUP_BATCH]
                    rows = conn.execute(
                        "SELECT key, text, prompt_tokens, output_tokens, finish_reason, "
                        "gen_seconds "
                        f"FROM generations WHERE key IN ({','.join('?' * len(batch))})",
                        batch,
                    ).fetchall()
                    for key, *fields in rows:
                        problem = _row_problem(*fields)
                        if problem:
                            log.warning(
                                "LLM cache file %s: entry %s is invalid (%s): regenerated",
                                path,
                                key,
                                problem,
                            )
                            continue
                        text, p_tok, o_tok, finish, seconds = fields
                        found[key] = (Generation(text, p_tok, o_tok, finish), seconds)
            except sqlite3.DatabaseError as err:
                if path == self.path:
                    raise
                self._readable_files[path] = False
                if type(err) is sqlite3.DatabaseError:  # damaged since it was checked
                    self._quarantine(path, str(err))
                else:  # locked for longer than the timeout: its entries are misses
                    log.warning("LLM cache file %s unreadable (%s): skipped", path, err)
        return found

    def put_many(self, entries: Sequence[tuple[str, str, Generation, float]], model: str) -> None:
        """Durably store ``(key, template, generation, gen_seconds)`` entries in one transaction.

        ``template`` and ``model`` are stored for people inspecting the store; lookups use the
        key only.
        """
        if self._own is None:
            raise RuntimeError(f"LLM cache {self.directory} is open read-only")
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
        """Entries in this writer's own file (0 when read-only)."""
        if self._own is None:
            return 0
        return self._own.execute("SELECT COUNT(*) FROM generations").fetchone()[0]


def _claim(directory: Path, writer: str) -> tuple[Path, int]:
    """This process's own file: ``<writer>.sqlite``, or a per-process name when another live
    process holds that writer's lock; returns the file and the held lock's descriptor."""
    path = directory / f"{writer}.sqlite"
    fd = _try_lock(path)
    if fd is not None:
        return path, fd
    unique = directory / f"{writer}.{socket.gethostname()}-{os.getpid()}.sqlite"
    fd = _try_lock(unique)
    if fd is None:  # cannot happen: the name holds our pid
        raise RuntimeError(f"cannot lock {unique}")
    log.warning(
        "LLM cache %s is in use by another running job (a stale job, or the same job twice): "
        "this job writes %s instead (read by every job like any writer's file)",
        path,
        unique.name,
    )
    return unique, fd


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _try_lock(path: Path) -> int | None:
    """The descriptor of ``path``'s lock file, locked exclusively; None when held elsewhere."""
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlocked(path: Path) -> bool:
    """Whether no running process writes ``path`` (its lock is free; taken and released)."""
    fd = _try_lock(path)
    if fd is not None:
        os.close(fd)
    return fd is not None


def _file_problem(path: Path) -> str | None:
    """What is wrong with cache file ``path`` (None: it can be read)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            check = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
            columns = [row[1] for row in conn.execute("PRAGMA table_info(generations)")]
        finally:
            conn.close()
    except sqlite3.OperationalError as err:  # locked, unreadable journal: not damage
        return f"{_SKIP} right now: {err}"
    except sqlite3.DatabaseError as err:  # SQLITE_NOTADB, SQLITE_CORRUPT
        return str(err)
    if check != ["ok"]:
        return "integrity check failed: " + "; ".join(check)
    if not columns:
        return f"{_SKIP}: no generations table"
    if tuple(columns) != _COLUMNS:
        return f"generations has columns {columns}, expected {list(_COLUMNS)}"
    return None


def _row_problem(
    text: Any, prompt_tokens: Any, output_tokens: Any, finish: Any, seconds: Any
) -> str | None:
    """What is wrong with a stored generation's fields (None: valid)."""
    if not isinstance(text, str):
        return f"text is {type(text).__name__}, not a string"
    for name, value, least in (
        ("prompt_tokens", prompt_tokens, 1),
        ("output_tokens", output_tokens, 0),
    ):
        if not isinstance(value, int) or value < least:
            return f"{name} {value!r} is not an integer >= {least}"
    if not isinstance(finish, str) or not finish or finish == PROMPT_TOO_LONG:
        return f"finish_reason {finish!r} is not a finished generation"
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return f"gen_seconds {seconds!r} is not a finite number >= 0"
    return None
