"""Small real inputs for the benchmarks: a BEIR folder read into the pipeline's tables.

Both benchmarks read BEIR SciFact (``$UTILANN_SHARED_DATA/scifact`` by default) so that the
figures are about real text lengths, not synthetic strings.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_BEIR = (
    Path(
        os.environ.get(
            "UTILANN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "scifact"
)


def read_corpus(beir_dir: Path) -> pd.DataFrame:
    """corpus.jsonl as a CORPUS-like frame (doc_id, title, text)."""
    with open(beir_dir / "corpus.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return pd.DataFrame(
        {
            "doc_id": [r["_id"] for r in rows],
            "title": [r.get("title", "") for r in rows],
            "text": [r["text"] for r in rows],
        }
    )


def random_negative_trainset(
    beir_dir: Path, n_queries: int, negatives: int, seed: int = 0
) -> pd.DataFrame:
    """A TRAINSET-like frame: train-split queries, their qrels positives, random negatives.

    Random (not BM25) negatives: throughput depends on text lengths, not on hardness.
    """
    corpus = read_corpus(beir_dir).set_index("doc_id")
    with open(beir_dir / "queries.jsonl", encoding="utf-8") as f:
        queries = {(q := json.loads(line))["_id"]: q["text"] for line in f}
    qrels = pd.read_csv(beir_dir / "qrels" / "train.tsv", sep="\t", dtype=str)
    qrels.columns = ["query_id", "doc_id", "score"]
    rng = np.random.default_rng(seed)
    ids = sorted(qrels["query_id"].unique())
    chosen = [ids[i] for i in sorted(rng.choice(len(ids), min(n_queries, len(ids)), replace=False))]
    rows = []
    for qid in chosen:
        positives = list(qrels.loc[qrels["query_id"] == qid, "doc_id"])
        pool = [
            d
            for d in corpus.index[
                rng.choice(len(corpus), negatives + len(positives), replace=False)
            ]
            if d not in positives
        ][:negatives]
        for pos, doc in enumerate(positives + pool):
            rows.append(
                {
                    "query_id": qid,
                    "query": queries[qid],
                    "position": pos,
                    "doc_id": doc,
                    "title": corpus.at[doc, "title"],
                    "text": corpus.at[doc, "text"],
                    "positive": doc in positives,
                    "is_human_positive": doc in positives,
                    "utility": None,  # REPLUG's teacher distribution only
                }
            )
    return pd.DataFrame(rows)


def beir_pools(root: Path, queries: int, negatives: int, seed: int = 0) -> pd.DataFrame:
    """Human positives of the first training queries plus random corpus passages."""
    corpus = pd.read_json(root / "corpus.jsonl", lines=True, dtype={"_id": str})
    texts = pd.read_json(root / "queries.jsonl", lines=True, dtype={"_id": str}).set_index("_id")
    qrels = pd.read_csv(root / "qrels" / "train.tsv", sep="\t", dtype=str)
    docs = corpus.set_index("_id")
    rng = random.Random(seed)
    rows = []
    for qid, group in list(qrels.groupby("query-id"))[:queries]:
        humans = list(group["corpus-id"])
        others = rng.sample([d for d in corpus["_id"] if d not in humans], negatives)
        for position, doc in enumerate(humans + others):
            rows.append(
                {
                    "query_id": qid,
                    "query": texts.loc[qid, "text"],
                    "position": position,
                    "doc_id": doc,
                    "title": docs.loc[doc, "title"],
                    "text": docs.loc[doc, "text"],
                    "is_human_positive": doc in humans,
                    "source": "human" if doc in humans else "random",
                    "source_rank": 0,
                }
            )
    return pd.DataFrame(rows)
