"""File-level entry points of the new-corpus mode (what the Snakemake scripts call).

Every hyper-parameter arrives explicitly (the rules' ``params``) and is written back into the
tables' metadata and the generation manifest, so each artifact says how it was made.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.bm25 import search
from utilann.datasets import read_corpus
from utilann.io import read_metadata, read_table, write_json, write_table
from utilann.llm.batch import open_generator
from utilann.llm.engine import EngineSpec
from utilann.llm.templates import load_template
from utilann.newcorpus import CODE_VERSION
from utilann.newcorpus.examples import (
    dataset_examples,
    examples_table,
    read_examples,
    written_examples,
)
from utilann.newcorpus.filters import HELDOUT, KEPT, round_trip_ranks, status_counts
from utilann.newcorpus.generate import QueryGenSettings, generate_queries
from utilann.newcorpus.sampling import contiguous_shards, sample_passages
from utilann.newcorpus.split import (
    mark_duplicates,
    mark_heldout,
    mark_round_trip,
    split_tables,
    unlabelled_queries,
)

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
GENERATE_TEMPLATE, CHECK_TEMPLATE = "query_gen", "query_check"


def write_examples(
    written: Sequence[Mapping[str, Any]],
    source: Mapping[str, Any] | None,
    tables: Mapping[str, PathLike],
    max_words: int,
    out: PathLike,
) -> int:
    """The few-shot examples: the written ones, then ``source["count"]`` drawn from the split
    in ``tables`` (``queries``, ``qrels``, ``corpus``) when ``source`` is given."""
    examples = written_examples(written, max_words)
    if source:
        examples += dataset_examples(
            read_table(tables["queries"]),
            read_table(tables["qrels"]),
            read_corpus(tables["corpus"]),
            source["count"],
            source["seed"],
            max_words,
        )
    meta = {"written": len(written), "source": dict(source) if source else None}
    write_table(examples_table(examples), out, schemas.FEW_SHOT, meta)
    log.info("%d few-shot examples (%d written, %s)", len(examples), len(written), source)
    return len(examples)


def write_passages(
    corpus_dir: PathLike,
    outs: Sequence[PathLike],
    count: int,
    min_words: int,
    max_words: int,
    seed: int,
) -> dict[str, int]:
    """Sample the source passages and write them as ``len(outs)`` CORPUS shards."""
    sample, counts = sample_passages(read_corpus(corpus_dir), count, min_words, max_words, seed)
    meta = {"count": count, "min_words": min_words, "max_words": max_words, "seed": seed}
    shards = contiguous_shards(sample, len(outs))
    for i, (shard, out) in enumerate(zip(shards, outs, strict=True)):
        write_table(shard, out, schemas.CORPUS, {**meta, **counts, "shard": i})
    log.info("sampled %s passages into %d shards", counts, len(outs))
    return counts


def generate_shard(
    *,
    generator: Mapping[str, Any],
    sampling: Mapping[str, Any],
    prompts: Mapping[str, Any],
    self_check: Mapping[str, Any],
    min_words: int,
    max_words: int,
    passage_max_words: int,
    chunk_size: int,
    cache_dir: str,
    writer: str,
    passages_path: PathLike,
    examples_path: PathLike,
    out: PathLike,
    manifest_path: PathLike,
) -> dict[str, Any]:
    """Write one question per passage of the shard (GENERATED_QUERIES) and the manifest.

    ``generator``: ``model`` (identity in cache keys), ``path`` (what the engine loads),
    ``engine``, ``env``, ``chat_template_kwargs``, ``backend``, ``transformers``
    (:func:`utilann.plan.llm_job`); ``prompts``:
    ``version`` and ``dir`` of the templates; ``self_check``: ``enabled`` and ``max_tokens``.
    """
    started = time.perf_counter()
    version, directory = prompts["version"], prompts.get("dir")
    sampling = {k: v for k, v in sampling.items() if v is not None}
    settings = QueryGenSettings(
        template=load_template(GENERATE_TEMPLATE, version, directory),
        sampling=sampling,
        passage_max_words=passage_max_words,
        min_words=min_words,
        max_words=max_words,
        check_template=(
            load_template(CHECK_TEMPLATE, version, directory) if self_check["enabled"] else None
        ),
        check_sampling={**sampling, "max_tokens": self_check["max_tokens"]},
    )
    passages = read_table(passages_path)
    examples = read_examples(read_table(examples_path))
    with open_generator(EngineSpec.from_job(generator), cache_dir, writer, chunk_size) as gen:
        table = generate_queries(passages, examples, settings, gen)
        identity, cache_file, started_engine = gen.identity, str(gen.cache.path), gen.started
    templates = [t for t in (settings.template, settings.check_template) if t is not None]
    meta = {
        "model": generator["model"],
        **identity.run_metadata(),  # what ran on this machine (``auto`` resolved)
        "sampling": sampling,
        "prompts": {"version": version, "dir": directory, **{t.name: t.sha256 for t in templates}},
        "examples": len(examples),
        "self_check": dict(self_check),
        "min_words": min_words,
        "max_words": max_words,
        "passage_max_words": passage_max_words,
        "code_version": CODE_VERSION,
    }
    write_table(table, out, schemas.GENERATED_QUERIES, meta)
    counts = status_counts(table["status"])
    manifest = {
        **meta,
        "passages": str(passages_path),
        "cache": {"dir": cache_dir, "file": cache_file},
        "statuses": counts,
        "llm_calls": {
            "query_gen": len(table),
            "generated": int((~table["from_cache"].astype(bool)).sum()),
            "query_check": int(table["self_check"].notna().sum()),
        },
        "engine_started": started_engine,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(manifest, manifest_path)
    log.info("%d passages -> %s", len(table), counts)
    return manifest


def write_split(
    *,
    shard_paths: Sequence[PathLike],
    index_dir: PathLike,
    bm25: Mapping[str, Any],
    duplicates: bool,
    round_trip_k: int | None,
    split: str,
    unlabelled: Mapping[str, Any] | None,
    unlabelled_tables: Mapping[str, Any],
    candidates_out: PathLike,
    queries_out: PathLike,
    qrels_out: PathLike,
    heldout: Mapping[str, Any] | None = None,
    heldout_out: Mapping[str, PathLike] | None = None,
) -> dict[str, int]:
    """Apply the split-level filters, hold out a share, add the unlabelled queries, write
    the split(s).

    ``bm25``: ``k1``, ``b``, ``variant``, ``threads`` of the round-trip search;
    ``unlabelled``: ``max_queries`` and ``seed`` (None = none added), ``unlabelled_tables``:
    ``queries`` (the dataset's QUERIES) and ``judged`` (the qrels of its evaluation splits);
    ``heldout``: ``split``, ``ratio``, ``seed`` of the held-out split (None = none), written
    to ``heldout_out`` (``queries``, ``qrels``).
    """
    table = pd.concat([read_table(p) for p in shard_paths], ignore_index=True)
    table["round_trip_rank"] = table["round_trip_rank"].astype("Int32")
    if duplicates:
        log.info("%d duplicate questions removed", mark_duplicates(table))
    if round_trip_k:
        kept = table[table["status"] == KEPT]
        run = search(
            index_dir,
            kept[["query_id", "text"]],
            bm25["k1"],
            bm25["b"],
            round_trip_k,
            bm25["threads"],
            bm25["variant"],
        )
        sources = dict(zip(kept["query_id"], kept["source_doc_id"], strict=True))
        failed = mark_round_trip(table, round_trip_ranks(run, sources))
        log.info(
            "%d questions whose source passage is not in the BM25 top %d", failed, round_trip_k
        )
    if heldout is not None:
        held = mark_heldout(table, heldout["ratio"], heldout["seed"])
        log.info("%d kept questions held out as split %s", held, heldout["split"])
    generated = status_counts(table["status"])
    if unlabelled is not None:
        extra = unlabelled_queries(
            read_table(unlabelled_tables["queries"]),
            [read_table(p) for p in unlabelled_tables["judged"]],
            unlabelled["max_queries"],
            unlabelled["seed"],
        )
        table = pd.concat([table, extra], ignore_index=True)
    queries, qrels = split_tables(table, split)
    counts = {
        **{f"generated_{s}": n for s, n in generated.items()},
        "generated": sum(generated.values()),
        "unlabelled": int((table["origin"] == "unlabelled").sum()),
        "split_queries": len(queries),
        "pseudo_qrels": len(qrels),
    }
    settings = {
        "split": split,
        "duplicates": duplicates,
        "round_trip_k": round_trip_k,
        "bm25": dict(bm25),
        "unlabelled": dict(unlabelled) if unlabelled else None,
        "heldout": dict(heldout) if heldout else None,
        "generation": read_metadata(shard_paths[0]),
        "counts": counts,
        "code_version": CODE_VERSION,
    }
    write_table(table, candidates_out, schemas.GENERATED_QUERIES, settings)
    write_table(queries, queries_out, schemas.QUERIES, settings)
    pseudo = {
        **settings,
        "pseudo": True,
        "judgement": "each generated query's source passage, relevance 1 (not a human label)",
    }
    write_table(qrels, qrels_out, schemas.QRELS, pseudo)
    if heldout is not None:
        if heldout_out is None:
            raise ValueError("a held-out split needs its output paths (heldout_out)")
        held_queries, held_qrels = split_tables(table, heldout["split"], HELDOUT)
        held_settings = {**settings, "split": heldout["split"]}
        write_table(held_queries, heldout_out["queries"], schemas.QUERIES, held_settings)
        write_table(
            held_qrels,
            heldout_out["qrels"],
            schemas.QRELS,
            {**pseudo, **held_settings, "heldout_of": split},
        )
    log.info("split %s: %s", split, counts)
    return counts
