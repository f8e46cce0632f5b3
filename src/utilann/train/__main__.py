"""``python -m utilann.train``: one training run, the command ``torchrun`` starts per device.

The ``train`` rule's script calls :func:`utilann.train.trainer.train_run` in-process for a
single device and launches ``torchrun --nproc_per_node N -m utilann.train ...`` for several:
a multi-GPU job is one Snakemake job that starts its own workers.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from utilann.train.checkpoints import CheckpointPolicy
from utilann.train.settings import TrainSettings
from utilann.train.trainer import train_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--init", required=True, help="backbone or parent checkpoint directory")
    parser.add_argument("--trainset", required=True, help="TRAINSET Parquet file")
    parser.add_argument("--output", required=True, help="checkpoint directory to write")
    parser.add_argument("--curve", required=True, help="loss curve Parquet file to write")
    parser.add_argument("--settings", required=True, help="TrainSettings as a JSON object")
    parser.add_argument(
        "--resume-dir", help="resume checkpoints: continue from the newest, save more there"
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=0, help="save every N steps (0: never)"
    )
    parser.add_argument("--checkpoint-keep", type=int, default=1, help="checkpoints kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    checkpointing = (
        CheckpointPolicy(Path(args.resume_dir), args.checkpoint_every, args.checkpoint_keep)
        if args.resume_dir
        else None
    )
    train_run(
        args.init,
        args.trainset,
        args.output,
        args.curve,
        TrainSettings(**json.loads(args.settings)),
        checkpointing,
    )


if __name__ == "__main__":
    main()
