"""How ingestion, BM25 and pool building grow with the corpus, projected to MS MARCO.

    python benchmarks/scale.py                        # 1e4 and 1e5 passages
    python benchmarks/scale.py --sizes 10000 100000 1000000

For each size N a synthetic BEIR-layout dataset is written: N passages of 56 words (MS MARCO's
mean) drawn from a Zipf-distributed vocabulary, and N x 491,007 / 8,841,823 training queries
(MS MARCO's ratio) of 6 words taken from their one relevant passage. The real workflow then
runs, one Snakemake job per stage: ingest_dataset (JSON lines -> Parquet shards), bm25_index
(Lucene), bm25_search of the training queries (top ``--depth``) and build_pools (human positive
+ 30 BM25 negatives per query). Wall time and peak RSS of each stage come from the jobs'
``benchmark:`` files (Snakemake measures the job's process tree).

The printed projection to 8,841,823 passages / 491,007 queries extrapolates each stage's time
and memory from the two largest sizes, as fixed + linear cost and as c * N^k (see project) - a
planning range, not a measurement. ``--results FILE`` keeps the figures of earlier runs, so
the large size can be measured alone later. Synthetic text is not MS MARCO's (vocabulary and
posting lists differ), and figures taken on a loaded machine are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from workflow_run import snakemake_command

MSMARCO_PASSAGES = 8_841_823
MSMARCO_TRAIN_QUERIES = 491_007
WORDS_PER_PASSAGE = 56
WORDS_PER_QUERY = 6
VOCABULARY = 100_000
STAGES = {
    "ingest_dataset": "results/benchmarks/datasets/synth.ingest.tsv",
    "bm25_index": "results/benchmarks/indexes/synth.bm25-flat.tsv",
    "bm25_search": "results/scale/benchmarks/bm25_search/synth.train.tsv",
    "build_pools": "results/scale/benchmarks/build_pools.tsv",
}


def write_dataset(root: Path, passages: int, seed: int = 0) -> int:
    """A BEIR directory of synthetic passages and queries; returns the number of queries."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(VOCABULARY)])
    root.mkdir(parents=True)
    queries = max(1, round(passages * MSMARCO_TRAIN_QUERIES / MSMARCO_PASSAGES))
    positives = rng.choice(passages, size=queries, replace=False)
    chunk = 100_000
    with open(root / "corpus.jsonl", "w") as corpus:
        for start in range(0, passages, chunk):
            n = min(chunk, passages - start)
            ids = np.minimum(rng.zipf(1.2, size=(n, WORDS_PER_PASSAGE)) - 1, VOCABULARY - 1)
            text = words[ids]
            corpus.writelines(
                json.dumps({"_id": f"p{start + i}", "title": "", "text": " ".join(row)}) + "\n"
                for i, row in enumerate(text)
            )
    texts = pd.read_json(root / "corpus.jsonl", lines=True)["text"]
    with open(root / "queries.jsonl", "w") as out:
        for q, doc in enumerate(positives):
            tokens = texts[doc].split()
            picked = rng.choice(len(tokens), size=WORDS_PER_QUERY, replace=False)
            out.write(json.dumps({"_id": f"q{q}", "text": " ".join(tokens[i] for i in picked)}))
            out.write("\n")
    (root / "qrels").mkdir()
    qrels = pd.DataFrame(
        {"query-id": [f"q{q}" for q in range(queries)], "corpus-id": [f"p{d}" for d in positives]}
    )
    qrels.assign(score=1).to_csv(root / "qrels" / "train.tsv", sep="\t", index=False)
    return queries


def run_size(workdir: Path, passages: int, depth: int, cores: int) -> dict[str, dict]:
    queries = write_dataset(workdir / "resources" / "datasets" / "synth", passages)
    config = {
        "experiment": "scale",
        "datasets": {"synth": {"format": "beir"}},
        "corpus": {"shard_size": 100_000},
        "train": {"dataset": "synth", "split": "train"},
        "evaluation": {"targets": []},
        "bm25": {"threads": cores, "depth": depth},
        "pools": {"negatives": 30, "max_queries": None, "shards": 1},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_command(
        workdir,
        workdir / "config.yaml",
        "results/scale/pools/shard-0.parquet",
        "--quiet",
        "all",
        cores=cores,
    )
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed for {passages} passages:\n{proc.stderr[-4000:]}")
    total = time.perf_counter() - start
    stages = {}
    for stage, path in STAGES.items():
        row = pd.read_csv(workdir / path, sep="\t").iloc[-1]
        stages[stage] = {"s": float(row["s"]), "rss_mb": float(row["max_rss"])}
    print(
        f"{passages:>9,} passages {queries:>7,} queries: "
        + ", ".join(f"{k} {v['s']:.1f} s / {v['rss_mb']:.0f} MB" for k, v in stages.items())
        + f" (workflow {total:.0f} s)",
        flush=True,
    )
    return stages


def project(results: dict[int, dict[str, dict]]) -> None:
    """Each stage's time and memory at MS MARCO's size, from the two largest sizes measured.

    Two extrapolations: ``fixed + per-passage x N`` (what start-up costs plus linear growth
    give; a lower bound for a stage that grows faster, such as BM25 search, where both the
    queries and the postings per query grow with N) and ``c x N^k`` (k shown: 1 = linear).
    """
    sizes = sorted(results)
    if len(sizes) < 2:
        return
    small, large = sizes[-2], sizes[-1]
    print(
        f"\nprojection to MS MARCO ({MSMARCO_PASSAGES:,} passages, "
        f"{MSMARCO_TRAIN_QUERIES:,} training queries) from {small:,} and {large:,} passages:"
    )
    for stage in STAGES:
        parts = []
        for key, unit in (("s", "h"), ("rss_mb", "GB")):
            a, b = results[small][stage][key], results[large][stage][key]
            slope = (b - a) / (large - small)
            linear = b + slope * (MSMARCO_PASSAGES - large)
            k = math.log(b / a) / math.log(large / small) if a > 0 and b > 0 else 1.0
            power = b * (MSMARCO_PASSAGES / large) ** k
            scale = 3600 if unit == "h" else 1024
            low, high = sorted((linear / scale, power / scale))
            name = "time" if unit == "h" else "peak RSS"
            parts.append(f"{name} {low:.1f}-{high:.1f} {unit} (k={k:.2f})")
        print(f"  {stage:<15} " + "   ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--depth", type=int, default=100, help="BM25 depth of the pool search")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--results", type=Path, help="JSON file of earlier sizes' figures to add to (and update)"
    )
    args = parser.parse_args()
    results = {}
    if args.results and args.results.exists():
        results = {int(k): v for k, v in json.loads(args.results.read_text()).items()}
    for passages in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"scale-{passages}-") as tmp:
            results[passages] = run_size(Path(tmp), passages, args.depth, args.cores)
        if args.results:
            args.results.write_text(json.dumps(results, indent=1))
    project(results)


if __name__ == "__main__":
    main()
