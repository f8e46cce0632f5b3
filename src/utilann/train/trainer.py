"""The training loop: AdamW, linear schedule, autocast, resumable, optional torchrun/DDP.

A plain loop rather than ``transformers.Trainer``: the authors' ``Trainer`` subclass (bi-
encode/trainer.py) broke when ``compute_loss`` changed signature in transformers 4.46, and the
loop here is short enough to read whole. One call trains one stage from an initial checkpoint
(the backbone, or another run's checkpoint for a curriculum stage 2, which thereby restarts the
learning-rate schedule).

Distributed: launched under ``torchrun`` (``WORLD_SIZE`` > 1), every rank takes its own
``batch_size`` queries of each global batch (so ``batch_size`` is per device, as in the paper's
16 x 8), and with ``negatives_x_device`` the loss scores them against all ranks' passages.
Incomplete last global batches are dropped then, since all ranks must gather equal shapes.

Precision: ``precision`` is resolved per machine (:mod:`utilann.hardware`): bf16 autocast where
the device computes bf16 natively (Ampere+ GPUs, CPUs with AMX/AVX512-BF16), fp32 elsewhere,
fp16 with loss scaling on CUDA when asked. Resuming: :mod:`utilann.train.checkpoints`.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from utilann.hardware import Precision, choose_precision
from utilann.io import read_metadata, read_table, write_table
from utilann.passages import title_share
from utilann.schemas import LOSS_CURVE
from utilann.train.checkpoints import (
    CheckpointPolicy,
    CheckpointStore,
    StopSignals,
    TrainingInterrupted,
    run_fingerprint,
    set_rng_state,
)
from utilann.train.data import TrainQuery, load_training_queries
from utilann.train.losses import LOSSES, build_loss
from utilann.train.model import BiEncoder, BiEncoderConfig, load_tokenizer, tokenize
from utilann.train.sampling import Group, GroupSampler, epoch_batches, n_batches
from utilann.train.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA); sampling uses its own seeded numpy generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def autocast_context(device: torch.device, precision: Precision) -> Any:
    """Autocast to the resolved bf16/fp16 on ``device``; nothing for fp32."""
    if precision.name == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=precision.dtype)


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on CUDA, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Optimisation:
    """AdamW, its linear LR schedule and the fp16 loss scaler: one optimiser step, and the
    state a resume restores besides the weights."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def build(
        cls, model: torch.nn.Module, s: TrainSettings, total: int, fp16: bool
    ) -> Optimisation:
        optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        schedule = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total), total)
        return cls(optimizer, schedule, torch.amp.GradScaler("cuda", enabled=fp16))

    def step(self, loss: torch.Tensor, params: Any, max_grad_norm: float) -> float:
        """Backward, clip, update, advance the schedule; the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        return float(grad_norm)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])


class Trainer:
    """Trains a :class:`BiEncoder` on a TRAINSET table with one of the paper's losses."""

    def __init__(self, settings: TrainSettings, init_dir: str | Path) -> None:
        self.settings = settings
        self.dist = Distributed.from_env()
        self.device = (
            torch.device("cuda", self.dist.local_rank)
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        self.precision = choose_precision(settings.precision, self.device, "training")
        seed_everything(settings.seed)
        self.tokenizer = load_tokenizer(init_dir)
        config = BiEncoderConfig.from_mapping(asdict(settings))
        self.model = BiEncoder.from_pretrained(init_dir, config=config).to(self.device)
        self.loss_fn = build_loss(
            settings.loss,
            similarity=self.model.similarity,
            gather_across_devices=settings.negatives_x_device,
        )

    def fit(
        self,
        trainset: pd.DataFrame,
        curve_path: str | Path | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> dict[str, Any]:
        """Train for ``epochs``; write the loss curve; return throughput statistics.

        With ``checkpoints``, training continues from the newest valid checkpoint there and
        saves one every ``every_steps`` steps: the resumed run takes exactly the remaining
        steps of an uninterrupted one (same batches, dropout draws, optimiser state).
        """
        s = self.settings
        queries, passages = load_training_queries(
            trainset, with_title=s.passage_title, separator=s.passage_separator
        )
        if not queries:
            raise ValueError("the training set has no query")
        if LOSSES[s.loss].utility and not any(q.utility for q in queries):
            raise ValueError(
                f"loss {s.loss} needs the teacher's utilities, but the training set has none "
                "(its label_source must be 'replug')"
            )
        sampler = GroupSampler(s.positive_sampling, s.group_size, s.seed, queries)
        global_batch = s.batch_size * self.dist.world_size
        distributed = self.dist.world_size > 1
        steps_per_epoch = n_batches(len(queries), global_batch, drop_last=distributed)
        if steps_per_epoch == 0:
            raise ValueError(
                f"{len(queries)} queries are fewer than one global batch of {global_batch}"
            )
        total = steps_per_epoch * s.epochs
        fp16 = self.device.type == "cuda" and self.precision.name == "fp16"
        opt = Optimisation.build(self.model, s, total, fp16)

        curve: list[dict[str, Any]] = []
        resumed = checkpoints.load_latest() if checkpoints is not None else None
        if resumed is not None:
            self.model.load_state_dict(resumed["model"])
            opt.load_state_dict(resumed["optimisation"])
            curve = list(resumed["curve"])
        first_step = len(curve)
        model: torch.nn.Module = self.model
        if distributed:
            model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        model.train()
        if resumed is not None:  # last: building DDP and the optimiser must not shift draws
            set_rng_state(resumed["rng"])
        offset = curve[-1]["elapsed_s"] if curve else 0.0
        start = time.perf_counter()
        progress = tqdm(
            total=total, initial=first_step, desc="train", disable=not self.dist.is_main
        )
        stop = StopSignals()
        with stop.installed() if checkpoints is not None else nullcontext(stop):
            for epoch in range(first_step // steps_per_epoch, s.epochs):
                batches = self._local_batches(len(queries), global_batch, epoch, distributed)
                done = max(0, first_step - epoch * steps_per_epoch)  # taken before a resume
                for batch in islice(batches, done, None):
                    groups = [sampler.group(queries[i], epoch) for i in batch]
                    with autocast_context(self.device, self.precision):
                        loss = self._step_loss(model, [queries[i] for i in batch], groups, passages)
                    grad_norm = opt.step(loss, self.model.parameters(), s.max_grad_norm)
                    n = len(batch) * self.dist.world_size
                    curve.append(
                        {
                            "step": len(curve) + 1,
                            "epoch": epoch,
                            "loss": self._mean_across_ranks(loss.detach()),
                            "lr": opt.schedule.get_last_lr()[0],
                            "grad_norm": grad_norm,
                            "queries": n,
                            "passages": n * s.group_size,
                            "elapsed_s": offset + time.perf_counter() - start,
                        }
                    )
                    progress.update()
                    progress.set_postfix(epoch=epoch, loss=f"{curve[-1]['loss']:.4f}")
                    if checkpoints is not None:
                        self._checkpoint(checkpoints, stop, opt, curve, total)
        progress.close()
        elapsed = offset + time.perf_counter() - start
        n_queries = sum(row["queries"] for row in curve)
        stats = {
            "steps": len(curve),
            "queries": len(queries),
            "train_seconds": elapsed,
            "queries_per_s": n_queries / elapsed,
            "passages_per_s": n_queries * s.group_size / elapsed,
            "peak_memory_mb": peak_memory_mb(self.device),
            "final_loss": curve[-1]["loss"],
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "precision": self.precision.name,
            "resumed_from_step": first_step if resumed is not None else None,
            # compared with each corpus this model encodes (utilann.dense)
            "passage_title_share": title_share(list(trainset.drop_duplicates("doc_id")["title"])),
        }
        if curve_path is not None and self.dist.is_main:
            write_table(
                pd.DataFrame(curve), curve_path, LOSS_CURVE, {"settings": asdict(s), **stats}
            )
        log.info("training done: %s", stats)
        return stats

    def _checkpoint(
        self,
        store: CheckpointStore,
        stop: StopSignals,
        opt: Optimisation,
        curve: list[dict[str, Any]],
        total: int,
    ) -> None:
        """Save when due, or when a stop signal came (then stop: :class:`TrainingInterrupted`)."""
        step = len(curve)
        stopping = stop.requested() and step < total
        if not (stopping or store.due(step, total)):
            return
        state = {"model": self.model.state_dict(), "optimisation": opt.state_dict(), "curve": curve}
        meta = {"epoch": curve[-1]["epoch"], "of_steps": total, "precision": self.precision.name}
        path = store.save(step, state, meta)
        if stopping:
            raise TrainingInterrupted(
                f"stopped by signal {stop.received} after step {step} of {total}; checkpoint "
                f"{path} saved: run again to resume"
            )

    def _local_batches(
        self, n_queries: int, global_batch: int, epoch: int, distributed: bool
    ) -> Iterator[list[int]]:
        """This rank's slice of each global batch (the whole batch when not distributed)."""
        per_rank = self.settings.batch_size
        lo = self.dist.rank * per_rank
        for batch in epoch_batches(n_queries, global_batch, epoch, self.settings.seed, distributed):
            yield batch[lo : lo + per_rank]

    def _step_loss(
        self,
        model: torch.nn.Module,
        batch: list[TrainQuery],
        groups: list[Group],
        passages: dict[str, str],
    ) -> torch.Tensor:
        """Encode the batch's queries and group passages and apply the loss."""
        s = self.settings
        q = tokenize(self.tokenizer, [x.text for x in batch], s.query_max_len, self.device)
        p = tokenize(
            self.tokenizer,
            [passages[d] for g in groups for d in g.doc_ids],
            s.passage_max_len,
            self.device,
        )
        q_emb, p_emb = model(q, p)  # through the DDP wrapper when distributed
        if LOSSES[s.loss].utility:  # the teacher's utility of each group passage (REPLUG)
            targets = torch.tensor(
                [g.utility or (0.0,) * len(g.doc_ids) for g in groups],
                dtype=torch.float32,
                device=self.device,
            )
        else:
            targets = torch.tensor(
                [g.positive for g in groups], dtype=torch.bool, device=self.device
            )
        return self.loss_fn(q_emb, p_emb, targets)

    def _mean_across_ranks(self, value: torch.Tensor) -> float:
        if self.dist.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.dist.world_size
        return float(value)

    def save(self, out_dir: str | Path, extra: dict[str, Any]) -> None:
        """Write the checkpoint (rank 0) into a sibling temp dir, then move it into place."""
        if not self.dist.is_main:
            return
        out = Path(out_dir)
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(
            tmp, self.tokenizer, {"training": asdict(self.settings), **extra}
        )
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)


def train_run(
    init_dir: str | Path,
    trainset_path: str | Path,
    out_dir: str | Path,
    curve_path: str | Path,
    settings: TrainSettings,
    checkpointing: CheckpointPolicy | None = None,
) -> dict[str, Any]:
    """Train one run from ``init_dir`` on a TRAINSET file; save checkpoint and loss curve.

    The checkpoint's ``biencoder.json`` records the settings, the training set's label
    statistics and the throughput figures. With ``checkpointing``, a rerun after a kill
    resumes from the newest checkpoint in its directory, which is removed once the final
    checkpoint is written.
    """
    trainer = Trainer(settings, init_dir)
    store = None
    if checkpointing is not None:
        fingerprint = run_fingerprint(settings, trainer.dist.world_size, trainset_path, init_dir)
        store = CheckpointStore(
            checkpointing, fingerprint, trainer.dist.rank, trainer.dist.world_size
        )
    stats = trainer.fit(read_table(trainset_path), curve_path, store)
    trainer.save(out_dir, {"trainset": read_metadata(trainset_path), "stats": stats})
    if store is not None:
        store.clear()
    return stats
