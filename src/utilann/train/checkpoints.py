"""Resumable training: the whole training state every N steps, written atomically.

A training job can die at any step: a SLURM time limit, a pre-empted node, an OOM kill, a
Ctrl-C. Every ``every_steps`` optimiser steps the trainer saves everything the remaining steps
depend on, so that a rerun continues and ends with the weights an uninterrupted run ends with:

* the model weights, the AdamW moments, the LR schedule and the fp16 loss scaler;
* the RNG states of python, numpy, torch and CUDA, per rank (dropout masks are torch draws);
* the position in the data: the step count. Batches are a function of (seed, epoch)
  (:func:`~utilann.train.sampling.epoch_batches`) and groups of (seed, query, epoch), so the
  step determines the epoch and the position in that epoch's permutation exactly;
* the loss curve so far, so the finished run writes one curve over all its steps.

Where: ``results/<experiment>/train/<run>/resume/step-<N>/``, a side directory that no rule
declares as output. Snakemake deletes the outputs of a failed job (which a time-out is) and
the outputs of an incomplete job before rerunning it, so a checkpoint inside the model output
directory would be deleted exactly when it is needed; ``--keep-incomplete`` would keep it but
also keeps half-written outputs that later rules would read. The LLM cache lives beside the
outputs for the same reason.

Validity: each checkpoint carries a fingerprint of what the run is (its settings, the number of
processes, the content of the training set and of the initial model). A checkpoint whose
fingerprint differs - the config or an input changed since it was written - is deleted and
never resumed from. A checkpoint is a temporary directory renamed into place once complete, so
a kill while writing leaves only a ``.tmp`` directory, which the next run removes. The resume
directory is deleted once the run's final checkpoint (the rule's output) is written.

Stopping early: SLURM sends SIGTERM at a job's time limit (and SIGKILL ``KillWait`` seconds
later; ``sbatch --signal=USR1@120`` asks for SIGUSR1 earlier), as does ``scancel``. While a job
writes checkpoints, :class:`StopSignals` turns those signals into a request that the loop
honours at the end of the current step: it saves a checkpoint there and raises
:class:`TrainingInterrupted`, so at most one step is lost instead of up to ``every_steps``.

Files are loaded with ``torch.load(weights_only=True)``: the state is kept to tensors and plain
Python values, so no pickled code is ever executed from a results directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from utilann.train.settings import TrainSettings

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the saved state changes shape: older checkpoints are then not resumed."""
META_FILE = "checkpoint.json"
STATE_FILE = "state.pt"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointPolicy:
    """How often a training job saves its state, where, and how many states it keeps.

    Attributes:
        directory: the run's resume directory (one per run; not a Snakemake output).
        every_steps: save after every this many optimiser steps; 0 = never (a killed run then
            starts over).
        keep: how many of the newest checkpoints to keep (older ones are deleted).
    """

    directory: Path
    every_steps: int = 0
    keep: int = 1

    def __post_init__(self) -> None:
        if self.every_steps < 0 or self.keep < 1:
            raise ValueError(
                f"checkpoint every_steps must be >= 0 and keep >= 1, got "
                f"{self.every_steps} and {self.keep}"
            )


def _hash_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)


def run_fingerprint(
    settings: TrainSettings, world_size: int, trainset: str | Path, init_dir: str | Path
) -> str:
    """SHA-256 of what a run is: settings, process count and the inputs' bytes.

    Content, not modification times: a rebuilt but identical training set (or a backbone
    re-prepared on another node) still resumes; any changed byte starts over.
    """
    digest = hashlib.sha256()
    header = {"format": FORMAT_VERSION, "settings": asdict(settings), "world_size": world_size}
    digest.update(json.dumps(header, sort_keys=True).encode())
    _hash_file(digest, Path(trainset))
    root = Path(init_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        _hash_file(digest, path)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CheckpointStore:
    """The resume directory of one run, seen from one process of the job.

    Args:
        policy: where and how often.
        fingerprint: :func:`run_fingerprint` of this run.
        rank, world_size: this process's place in a torchrun job. Rank 0 writes the shared
            state (DDP replicas are identical); every rank writes its own RNG state.
    """

    def __init__(
        self, policy: CheckpointPolicy, fingerprint: str, rank: int = 0, world_size: int = 1
    ) -> None:
        self.policy = policy
        self.fingerprint = fingerprint
        self.rank = rank
        self.world_size = world_size

    @property
    def directory(self) -> Path:
        return self.policy.directory

    def due(self, step: int, total: int) -> bool:
        """Whether to save after ``step`` (never after the last: the final model follows)."""
        every = self.policy.every_steps
        return every > 0 and step < total and step % every == 0

    def _checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, directory), oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("step-*"):
            if path.is_dir() and (path / META_FILE).exists():
                try:
                    found.append((int(path.name.removeprefix("step-")), path))
                except ValueError:
                    continue
        return sorted(found)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest valid checkpoint's state (on CPU), or None.

        Rank 0 first removes what must never be resumed: leftovers of a write that was killed
        (``.step-*.tmp``) and checkpoints written for other settings or inputs. Then every rank
        reads the newest remaining one.
        """
        if self.rank == 0:
            for tmp in self.directory.glob(".step-*.tmp") if self.directory.is_dir() else []:
                log.info("removing a partly written checkpoint %s", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
            for _, path in self._checkpoints():
                if json.loads((path / META_FILE).read_text()).get("fingerprint") != (
                    self.fingerprint
                ):
                    log.warning(
                        "deleting checkpoint %s: written for other settings or inputs", path
                    )
                    shutil.rmtree(path, ignore_errors=True)
        _barrier()
        found = self._checkpoints()
        if not found:
            return None
        step, path = found[-1]
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        state["rng"] = torch.load(
            path / f"rng-rank{self.rank}.pt", map_location="cpu", weights_only=True
        )
        log.info("resuming from %s (step %d)", path, step)
        return state

    def save(self, step: int, state: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
        """Write ``state`` (rank 0) and every rank's RNG state as checkpoint ``step``.

        Written into ``.step-<N>.tmp`` and renamed into place: a checkpoint directory without
        its ``checkpoint.json`` never exists. All ranks must call this at the same step.
        """
        final = self.directory / f"step-{step:09d}"
        tmp = self.directory / f".{final.name}.tmp"
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        _save(rng_state(), tmp / f"rng-rank{self.rank}.pt")
        _barrier()
        if self.rank == 0:
            _save(dict(state), tmp / STATE_FILE)
            info = {
                "format": FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "step": step,
                "world_size": self.world_size,
                **meta,
            }
            (tmp / META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            _fsync_dir(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(self.directory)
            for _, old in self._checkpoints()[: -self.policy.keep]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("checkpoint %s written", final)
        _barrier()
        return final

    def clear(self) -> None:
        """Delete the resume directory (rank 0), once the run's final model is written."""
        if self.rank == 0 and self.directory.exists():
            shutil.rmtree(self.directory)
            log.info("training finished: removed resume checkpoints in %s", self.directory)


def _save(obj: Any, path: Path) -> None:
    """torch.save, flushed to disk (a node crash must not leave a renamed, empty file)."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; a rerun resumes from it."""


class StopSignals:
    """SIGTERM and SIGUSR1 become a stop request checked between steps (see module doc).

    Under torchrun the ranks agree (a max all-reduce of the flag each step), so that all save
    the same step even when the signal reaches them at different moments.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Catch the signals while the block runs (main thread only; a no-op elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def requested(self) -> bool:
        """Whether this process (or, under torchrun, any rank) was asked to stop."""
        flag = self.received is not None
        if dist.is_available() and dist.is_initialized():
            value = torch.tensor([int(flag)])
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
            flag = bool(value.item())
        return flag
