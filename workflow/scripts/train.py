"""Train one run: in this process on one device, or via torchrun with one process per GPU."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from utilann.logs import script_logging
from utilann.train.checkpoints import CheckpointPolicy
from utilann.train.settings import TrainSettings
from utilann.train.trainer import train_run

inp, out, p, res = snakemake.input, snakemake.output, snakemake.params, snakemake.resources
settings = TrainSettings(**p.settings)
checkpointing = CheckpointPolicy(
    Path(p.resume_dir), res.checkpoint_every_steps, res.checkpoint_keep
)
with script_logging(snakemake.log[0], "train") as log:
    if p.world_size > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={p.world_size}",
            "-m",
            "utilann.train",
            "--init",
            inp.init,
            "--trainset",
            inp.trainset,
            "--output",
            out.model,
            "--curve",
            out.curve,
            "--settings",
            json.dumps(p.settings),
            "--resume-dir",
            p.resume_dir,
            "--checkpoint-every",
            str(checkpointing.every_steps),
            "--checkpoint-keep",
            str(checkpointing.keep),
        ]
        log.info("launching %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    else:
        torch.set_num_threads(snakemake.threads)
        stats = train_run(inp.init, inp.trainset, out.model, out.curve, settings, checkpointing)
        if stats["resumed_from_step"] is not None:
            log.info("resumed from step %d", stats["resumed_from_step"])
        log.info(
            "%d steps, %.1f queries/s, %.1f passages/s, peak %.0f MB",
            stats["steps"],
            stats["queries_per_s"],
            stats["passages_per_s"],
            stats["peak_memory_mb"],
        )
