"""``python -m utilann.train``: one training run, the command ``torchrun`` starts per device.

The ``train`` rule's script calls :func:`utilann.train.trainer.train_run` in-process for a
single device and launches ``torchrun --nproc_per_node N -m utilann.train ...`` for several:
a multi-GPU job is one Snakemake job that starts its own workers.
"""

from __future__ import annotations

import argparse
import json
import logging

from utilann.train.settings import TrainSettings
from utilann.train.trainer import train_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--init", required=True, help="backbone or parent checkpoint directory")
    parser.add_argument("--trainset", required=True, help="TRAINSET Parquet file")
    parser.add_argument("--output", required=True, help="checkpoint directory to write")
    parser.add_argument("--curve", required=True, help="loss curve Parquet file to write")
    parser.add_argument("--settings", required=True, help="TrainSettings as a JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    train_run(
        args.init,
        args.trainset,
        args.output,
        args.curve,
        TrainSettings(**json.loads(args.settings)),
    )


if __name__ == "__main__":
    main()
