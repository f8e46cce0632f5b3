"""File-level entry points of the audits (what rules audit_negatives and audit_injection
call): read the pools and the cascade's pseudo-answers, judge through the annotator's cached
generation loop, write the tables and a manifest.

Both judge with the annotation's own LLM, prompts and decoding (``annotation.decoding`` of
RelSel, the pseudo-answer and UtilSel): :class:`~utilann.annotate.cascade.CascadeSettings`
of strategy ``utilsel`` holds those three templates and each step's sampling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from utilann import schemas
from utilann.annotate.cascade import CascadeSettings, group_pools
from utilann.annotate.job import engine_kwargs
from utilann.annotate.steps import get_step
from utilann.audit import AUDITED_STEPS, injection, negatives
from utilann.audit.answers import cascade_answers, reference_answers
from utilann.io import read_table, write_json, write_table
from utilann.llm.batch import open_generator
from utilann.llm.engine import EngineSpec
from utilann.llm.templates import load_templates

log = logging.getLogger(__name__)


def cascade_settings(
    sampling: Mapping[str, Any], decoding: Mapping[str, str], prompts: Mapping[str, Any]
) -> CascadeSettings:
    """The annotation's templates and per-step decoding for the audited steps."""
    return CascadeSettings(
        sampling={k: v for k, v in sampling.items() if v is not None},
        templates=load_templates(AUDITED_STEPS, prompts["version"], prompts.get("dir")),
        strategies=("utilsel",),
        decoding={s: decoding.get(s, "free") for s in AUDITED_STEPS},
    )


def json_row(table: pd.DataFrame) -> dict[str, Any]:
    """The first row of ``table`` as plain Python values (for a JSON manifest)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in table.iloc[0].items()}


def _engine(llm: Mapping[str, Any], settings: CascadeSettings) -> EngineSpec:
    return EngineSpec.from_job(
        {**llm, "engine": engine_kwargs(llm["engine"], settings.constrained)}
    )


def _read_pools(paths: Sequence[str]) -> pd.DataFrame:
    return pd.concat([read_table(p, schemas.POOLS.names) for p in paths], ignore_index=True)


def _read_answers(paths: Sequence[str]) -> dict[str, str]:
    if not paths:
        return {}
    return cascade_answers(pd.concat([read_table(p) for p in paths], ignore_index=True))


def negatives_files(
    *,
    pools: Sequence[str],
    cascade_raw: Sequence[str],
    llm: Mapping[str, Any],
    sampling: Mapping[str, Any],
    decoding: Mapping[str, str],
    prompts: Mapping[str, Any],
    audit: Mapping[str, Any],
    dataset: str,
    split: str,
    passage_max_words: int,
    chunk_size: int,
    cache_dir: str,
    writer: str,
    out: Mapping[str, str],
) -> dict[str, Any]:
    """Rule audit_negatives: judge a sample of training pools (:mod:`utilann.audit.negatives`).

    ``audit`` is ``audit.false_negatives`` (sample, seed, window_size); ``out`` holds the
    ``table``, ``summary``, ``raw`` and ``manifest`` paths.
    """
    started = time.perf_counter()
    settings = cascade_settings(sampling, decoding, prompts)
    table = _read_pools(pools)
    chosen = negatives.sample_queries(table["query_id"], audit["sample"], audit["seed"])
    with open_generator(_engine(llm, settings), cache_dir, writer, chunk_size) as generator:
        result = negatives.audit_negatives(
            table,
            chosen,
            _read_answers(cascade_raw),
            settings.templates,
            generator,
            settings.sampling_for,
            audit["window_size"],
            audit["seed"],
            passage_max_words,
        )
        identity = generator.identity
    summary = negatives.summary(result.table, dataset, split)
    meta = {
        "model": llm["model"],
        "model_revision": identity.revision,
        "audit": dict(audit),
        "dataset": dataset,
        "split": split,
        "pool_queries": int(table["query_id"].nunique()),
        "prompts": {s: settings.templates[s].id for s in ("answer", "utilsel")},
        "decoding": {s: settings.decoding[s] for s in ("answer", "utilsel")},
    }
    write_table(result.table, out["table"], schemas.AUDIT_NEGATIVES, meta)
    write_table(summary, out["summary"], schemas.AUDIT_SUMMARY, meta)
    write_table(result.raw, out["raw"], schemas.RAW, meta)
    manifest = {
        **meta,
        "summary": json_row(summary),
        "steps": {s: st.as_dict() for s, st in result.stats.items()},
        "engine_started": generator.started,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(manifest, out["manifest"])
    return manifest


def injection_files(
    *,
    pools: Sequence[str],
    cascade_raw: Sequence[str],
    llm: Mapping[str, Any],
    sampling: Mapping[str, Any],
    decoding: Mapping[str, str],
    prompts: Mapping[str, Any],
    audit: Mapping[str, Any],
    attacks_path: str | None,
    passage_max_words: int,
    chunk_size: int,
    cache_dir: str,
    writer: str,
    out: Mapping[str, str],
) -> dict[str, Any]:
    """Rule audit_injection: judge paired pools with and without planted instructions
    (:mod:`utilann.audit.injection`).

    ``audit`` is ``audit.injection`` (queries, pool_size, seed, steps); ``out`` holds the
    ``table``, ``summary``, ``raw`` and ``manifest`` paths.
    """
    started = time.perf_counter()
    settings = cascade_settings(sampling, decoding, prompts)
    attacks = injection.load_attacks(attacks_path)
    table = _read_pools(pools)
    chosen = negatives.sample_queries(table["query_id"], audit["queries"], audit["seed"])
    table = table[table["query_id"].astype(str).isin(chosen)]
    queries = group_pools(table, passage_max_words)
    steps = list(audit["steps"])
    if len(queries) < 2:
        # A corpus of one's own can start with a single training question: the audit is then
        # not measurable (a target comes from another query's pool). Say so in every output
        # and the report instead of failing the whole workflow at its end.
        reason = (
            "not measured: the injection audit needs at least two queries (a target passage "
            f"comes from another query's pool); its sample holds {len(queries)}"
        )
        return _write_injection(
            injection.InjectionRun(_empty(schemas.INJECTION), _empty(schemas.RAW), {}),
            {"model": llm["model"], "audit": dict(audit), "skipped": reason},
            {},
            out,
            started,
            engine_started=False,
        )
    built = injection.build_pools(queries, audit["pool_size"], audit["seed"])
    with open_generator(_engine(llm, settings), cache_dir, writer, chunk_size) as generator:
        refs = reference_answers(
            [tp.pool for tp in built] if any(get_step(s).needs_answer for s in steps) else [],
            _read_answers(cascade_raw),
            settings.templates["answer"],
            generator,
            lambda n: settings.sampling_for("answer", n),
        )
        result = injection.run_injection(
            built,
            attacks.attacks,
            steps,
            settings.templates,
            refs.answers,
            generator,
            settings.sampling_for,
        )
        identity = generator.identity
    meta = {
        "model": llm["model"],
        "model_revision": identity.revision,
        "audit": dict(audit),
        "attacks": {"path": attacks_path, "version": attacks.version, "sha256": attacks.sha256},
        "prompts": {s: settings.templates[s].id for s in steps},
        "decoding": {s: settings.decoding[s] for s in steps},
    }
    stats = {"answer": refs.stats, **result.stats}
    return _write_injection(result, meta, stats, out, started, engine_started=generator.started)


def _empty(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


def _write_injection(
    result: injection.InjectionRun,
    meta: dict[str, Any],
    stats: Mapping[str, Any],
    out: Mapping[str, str],
    started: float,
    *,
    engine_started: bool,
) -> dict[str, Any]:
    summary = injection.summary(result.table)
    write_table(result.table, out["table"], schemas.INJECTION, meta)
    write_table(summary, out["summary"], schemas.INJECTION_SUMMARY, meta)
    write_table(result.raw, out["raw"], schemas.RAW, meta)
    manifest = {
        **meta,
        "steps": {s: st.as_dict() for s, st in stats.items()},
        "engine_started": engine_started,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(manifest, out["manifest"])
    return manifest
