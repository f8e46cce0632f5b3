"""File-level entry points of the annotation stage (what the Snakemake scripts call).

Every hyper-parameter arrives explicitly (the rule's ``params``) and is written back into the
Parquet metadata and the manifest, so each artifact says how it was made.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from utilann.annotate.calibration import (
    calibrate,
    calibration_report,
    graded_set,
    training_set,
)
from utilann.annotate.calibration import render_markdown as calibration_markdown
from utilann.annotate.cascade import Cascade, CascadeSettings
from utilann.annotate.merge import empty_queries, read_shards
from utilann.annotate.report import annotation_report, render_markdown, step_summary
from utilann.annotate.steps import cascade_steps
from utilann.datasets import read_corpus, split_qrels
from utilann.io import atomic_path, read_table, write_json, write_table
from utilann.llm.batch import open_generator
from utilann.llm.cache import ModelIdentity
from utilann.llm.engine import EngineSpec
from utilann.llm.grammar import BACKEND
from utilann.llm.templates import load_templates
from utilann.schemas import (
    ANNOTATION_REPORT,
    CALIBRATION_LABELS,
    CALIBRATION_POSITIONS,
    CALIBRATION_RAW,
    CALIBRATION_REPORT,
    LABELS,
    POOLS,
    RAW,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotationJob:
    """The settings of one shard's annotation job (one field per rule param).

    Attributes:
        model: the annotator's identity in cache keys and metadata (config ``llm.model``).
        model_path: where the engine loads it from (HF id or prepared local directory).
        backend: ``llm.backend`` (``auto``, ``vllm``, ``transformers``), resolved in the job.
        transformers: the transformers backend's batching (``llm.transformers``).
        engine: ``vllm.LLM`` arguments; ``extra`` holds any further ones.
        env: environment variables set before the engine starts (vLLM-CPU knobs).
        writer: name of this job's own cache file, e.g. ``demo.shard-0``.
        prompt_too_long: ``llm.prompt_too_long`` (``error``: prompts that do not fit
            ``max_model_len`` stop the job before they are generated; ``skip``).
    """

    model: str
    model_path: str
    backend: str
    transformers: Mapping[str, Any]
    engine: Mapping[str, Any]
    env: Mapping[str, str]
    chat_template_kwargs: Mapping[str, Any]
    sampling: Mapping[str, Any]
    prompts: Mapping[str, Any]
    strategies: Sequence[str]
    window_size: int
    position_policy: str
    seed: int
    passage_max_words: int
    chunk_size: int
    cache_dir: str
    writer: str
    code_version: str
    decoding: Mapping[str, str] = field(default_factory=dict)
    prompt_too_long: str = "error"

    @property
    def engine_kwargs(self) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.engine.items() if k != "extra" and v is not None}
        return engine_kwargs(
            {**kwargs, **dict(self.engine.get("extra") or {})},
            any(mode == "constrained" for mode in self.decoding.values()),
        )

    @property
    def sampling_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.sampling.items() if v is not None}

    def settings(self) -> CascadeSettings:
        return CascadeSettings(
            sampling=self.sampling_params,
            templates=load_templates(
                cascade_steps(self.strategies), self.prompts["version"], self.prompts.get("dir")
            ),
            strategies=tuple(self.strategies),
            window_size=self.window_size,
            position_policy=self.position_policy,
            seed=self.seed,
            passage_max_words=self.passage_max_words,
            decoding=dict(self.decoding),
        )

    @property
    def engine_spec(self) -> EngineSpec:
        """The annotator's engine (started by the generation loop on a cache miss only)."""
        return EngineSpec(
            self.model,
            self.model_path,
            self.engine_kwargs,
            self.env,
            self.chat_template_kwargs,
            backend=self.backend,
            transformers=self.transformers,
            prompt_too_long=self.prompt_too_long,
        )


def engine_kwargs(kwargs: Mapping[str, Any], constrained: bool) -> dict[str, Any]:
    """``vllm.LLM`` arguments of an LLM job; one that constrains decoding gets the grammar
    backend (:data:`utilann.llm.grammar.BACKEND`) unless the config names one."""
    out = dict(kwargs)
    if constrained:
        out.setdefault("structured_outputs_config", {"backend": BACKEND})
    return out


def _label_metadata(
    job: AnnotationJob, settings: CascadeSettings, identity: ModelIdentity
) -> dict[str, Any]:
    return {
        "model": job.model,
        "model_path": job.model_path,
        **identity.run_metadata(),  # what ran on this machine (``auto`` resolved)
        "sampling": settings.sampling,
        "prompts": {
            "version": job.prompts["version"],
            "dir": job.prompts.get("dir"),
            "sha256": {step: t.sha256 for step, t in settings.templates.items()},
        },
        "strategies": list(settings.strategies),
        "window_size": settings.window_size,
        "position_policy": settings.position_policy,
        "seed": settings.seed,
        "passage_max_words": settings.passage_max_words,
        "decoding": {step: settings.decoding.get(step, "free") for step in settings.steps},
        "code_version": job.code_version,
    }


def annotate_shard(
    job: AnnotationJob,
    pools_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    raw_path: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Run the cascade on one pool shard; write labels, raw outputs and the manifest."""
    started = time.perf_counter()
    settings = job.settings()
    pools = read_table(pools_path, POOLS.names)
    with open_generator(job.engine_spec, job.cache_dir, job.writer, job.chunk_size) as generator:
        result = Cascade(settings, generator).run(pools)
        identity, cache_file = generator.identity, str(generator.cache.path)
        prefix_cache = generator.prefix_cache()

    meta = _label_metadata(job, settings, identity)
    write_table(result.labels, labels_path, LABELS, meta)
    write_table(result.raw, raw_path, RAW, meta)
    steps = {step: st.as_dict() for step, st in result.stats.items()}
    for step, st in steps.items():
        log.info(
            "%s: %d calls, %d generated, %d from cache, parse %s",
            step,
            st["calls"],
            st["generated"],
            st["cached"],
            st["parse"],
        )
    manifest = {
        **meta,
        "pools": str(pools_path),
        "engine": dict(job.engine),
        "env": dict(job.env),
        "chunk_size": job.chunk_size,
        "prompt_too_long": job.prompt_too_long,
        "cache": {"dir": job.cache_dir, "file": cache_file},
        "queries": result.queries,
        "steps": steps,
        "llm_calls": {
            k: sum(st[k] for st in steps.values()) for k in ("calls", "generated", "cached")
        },
        "engine_started": generator.started,
        "prefix_cache": prefix_cache,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(manifest, manifest_path)
    return manifest


def merge_labels(
    shard_paths: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]
) -> dict[str, int]:
    """Write the labels of all shards as one LABELS file; return empty queries per strategy."""
    labels, meta = read_shards(shard_paths)
    empty = {s: len(empty_queries(labels, s)) for s in sorted(labels["strategy"].unique())}
    write_table(
        labels, out_path, LABELS, {**meta, "shards": len(shard_paths), "empty_queries": empty}
    )
    log.info(
        "merged %d shards: %d label rows; queries without a positive per strategy: %s",
        len(shard_paths),
        len(labels),
        empty,
    )
    return empty


def write_report(
    shard_labels: Sequence[str | os.PathLike[str]],
    shard_raw: Sequence[str | os.PathLike[str]],
    out_parquet: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """Write the per-strategy annotation report (Parquet + Markdown)."""
    labels, meta = read_shards(shard_labels)
    raw = pd.concat([read_table(p) for p in shard_raw], ignore_index=True)
    report = annotation_report(labels, raw, thresholds)
    settings = {**meta, "utilrank_thresholds": list(thresholds)}
    write_table(report, out_parquet, ANNOTATION_REPORT, settings)
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(render_markdown(report, step_summary(raw), settings), encoding="utf-8")
    return report


def load_calibration_sets(
    specs: Sequence[Mapping[str, Any]],
    pool_paths: Sequence[str | os.PathLike[str]],
    graded: Mapping[str, Mapping[str, str | os.PathLike[str]]],
    max_queries: int | None,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """The calibration sets (POOLS tables) of ``annotation.calibration.sets``.

    A ``pools`` set samples the training pools (``pool_paths``, every shard); a ``qrels`` set
    reads ``graded[name]``'s ``queries``, ``qrels`` (split ``spec["split"]``) and ``corpus``.
    """
    sets = {}
    for spec in specs:
        name = spec["name"]
        if spec["source"] == "pools":
            pools = pd.concat([read_table(p, POOLS.names) for p in pool_paths], ignore_index=True)
            sets[name] = training_set(pools, max_queries, seed)
        else:
            files = graded[name]
            sets[name] = graded_set(
                read_table(files["queries"]),
                split_qrels(read_table(files["qrels"]), spec["split"]),
                read_corpus(files["corpus"]),
                spec["min_relevance"],
                spec["pool_size"],
                max_queries,
                seed,
            )
        log.info(
            "calibration set %s: %d queries, %d passages, %d human positives",
            name,
            sets[name]["query_id"].nunique(),
            len(sets[name]),
            int(sets[name]["is_human_positive"].sum()),
        )
    return sets


def calibrate_files(
    job: AnnotationJob,
    sets: Mapping[str, pd.DataFrame],
    order_seeds: Sequence[int],
    utilrank_threshold: float,
    out: Mapping[str, str | os.PathLike[str]],
) -> dict[str, Any]:
    """Judge the calibration sets with the annotation's settings and engine; write the labels,
    raw calls, report (Parquet + Markdown), position rates and manifest (keys of ``out``)."""
    started = time.perf_counter()
    settings = job.settings()
    with open_generator(job.engine_spec, job.cache_dir, job.writer, job.chunk_size) as generator:
        run = calibrate(settings, generator, sets, order_seeds)
        identity = generator.identity
    meta = {
        **_label_metadata(job, settings, identity),
        "position_policy": "shuffled",
        "order_seeds": list(order_seeds),
        "utilrank_threshold": utilrank_threshold,
    }
    del meta["seed"]  # the display orders are the order seeds
    report, positions, steps = calibration_report(run.labels, run.raw, utilrank_threshold)
    write_table(run.labels, out["labels"], CALIBRATION_LABELS, meta)
    write_table(run.raw, out["raw"], CALIBRATION_RAW, meta)
    write_table(positions, out["positions"], CALIBRATION_POSITIONS, meta)
    write_table(report, out["report"], CALIBRATION_REPORT, meta)
    with atomic_path(out["markdown"]) as tmp:
        tmp.write_text(calibration_markdown(report, positions, steps, meta), encoding="utf-8")
    calls = run.raw["from_cache"].astype(bool)
    manifest = {
        **meta,
        "sets": {name: int(pools["query_id"].nunique()) for name, pools in sets.items()},
        "steps": run.steps,
        "llm_calls": {
            "calls": len(calls),
            "generated": int((~calls).sum()),
            "cached": int(calls.sum()),
        },
        "engine_started": generator.started,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(manifest, out["manifest"])
    return manifest
