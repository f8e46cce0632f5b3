"""The Hybrid Test (paper 5.1, Table 2): golden labels = human positives + an LLM judge's.

Human qrels of MS MARCO Dev hold about one positive per query, so a run that ranks another
useful passage first is scored as wrong. The paper's Hybrid Test relabels a pool: 200 random
Dev queries, the union of the compared retrievers' top-20 passages, judged by an LLM
(GPT-4o-mini there; here any configured model) with the UtilSel prompt *given the ground-truth
answer* as reference answer; the golden labels are the human positives plus the judge's
positives, and every run is scored on them with MRR@10 and nDCG@10.

Three steps, each a pure function of tables:

* :func:`build_pool` - the judged pool, a POOLS table: per query the union of the runs' top
  ``depth`` passages in a seeded random order (no run's passages get the first positions of a
  prompt), ``source`` naming the runs that retrieved the passage and ``source_rank`` its best
  rank;
* :func:`judge_pool` - the judge, step ``judge`` of the annotation step registry (the UtilSel
  template, answer = gold answer), sent through the one cached generation loop: each query's
  pool is split evenly into prompts of at most ``window_size`` passages, every passage shown
  once; it returns LABELS rows (strategy ``judge``) and RAW rows of every call;
* :func:`golden_qrels` - human positives (their grade kept) plus judge positives (grade 1),
  for the sampled queries only, under the split name ``<split>-hybrid``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann import schemas
from utilann.annotate.cascade import group_pools
from utilann.annotate.judge import Judgements, judge_windows
from utilann.annotate.steps import get_step
from utilann.annotate.windows import relsel_windows
from utilann.llm.batch import CachedGenerator
from utilann.llm.templates import PromptTemplate

log = logging.getLogger(__name__)

JUDGE_STEP = "judge"


def build_pool(
    runs: Mapping[str, pd.DataFrame],
    query_ids: Sequence[str],
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    passages: pd.DataFrame,
    depth: int,
    seed: int,
) -> pd.DataFrame:
    """The Hybrid Test's pool of ``query_ids`` as a POOLS table (module docstring).

    Args:
        runs: RUN tables of the pool's runs, by run name.
        query_ids: the sampled queries.
        queries: QUERIES table (the query text).
        qrels: QRELS rows of the split (``is_human_positive`` = relevance > 0).
        passages: CORPUS rows of (at least) every pooled passage.
        depth: top passages taken from each run.
        seed: seed of the per-query display order.
    """
    wanted = list(dict.fromkeys(map(str, query_ids)))
    text = dict(zip(queries["query_id"].astype(str), queries["text"].astype(str)))
    missing = [q for q in wanted if q not in text]
    if missing:
        raise ValueError(f"{len(missing)} sampled queries have no text (e.g. {missing[:3]})")
    positives = set(
        zip(
            qrels.loc[qrels["relevance"] > 0, "query_id"].astype(str),
            qrels.loc[qrels["relevance"] > 0, "doc_id"].astype(str),
        )
    )
    found: dict[tuple[str, str], dict[str, int]] = {}
    for name, run in runs.items():
        top = run[run["query_id"].astype(str).isin(wanted) & (run["rank"] <= depth)]
        for qid, did, rank in top[["query_id", "doc_id", "rank"]].itertuples(index=False):
            found.setdefault((str(qid), str(did)), {})[name] = int(rank)
    docs = passages.assign(doc_id=passages["doc_id"].astype(str)).set_index("doc_id")
    rows = []
    for qid in wanted:
        pooled = sorted(did for q, did in found if q == qid)
        random.Random(f"{seed}:{qid}").shuffle(pooled)
        for position, did in enumerate(pooled):
            if did not in docs.index:
                raise KeyError(f"pooled passage {did!r} (query {qid!r}) is not in the corpus")
            by_run = found[(qid, did)]
            rows.append(
                {
                    "query_id": qid,
                    "query": text[qid],
                    "position": position,
                    "doc_id": did,
                    "title": str(docs.at[did, "title"] or ""),
                    "text": str(docs.at[did, "text"] or ""),
                    "is_human_positive": (qid, did) in positives,
                    "source": ",".join(r for r in runs if r in by_run),
                    "source_rank": min(by_run.values()),
                }
            )
    return pd.DataFrame(rows, columns=schemas.POOLS.names)


def judge_pool(
    pool: pd.DataFrame,
    answers: Mapping[str, Sequence[str]],
    template: PromptTemplate,
    generator: CachedGenerator,
    sampling: Mapping[str, Any],
    window_size: int,
    passage_max_words: int,
) -> Judgements:
    """Ask the judge which pooled passages have utility for the gold answer (module doc).

    The reference answer is the query's first gold answer (MS MARCO QA lists a few variants of
    one answer; the UtilSel prompt takes one). A query without a gold answer is an error: the
    sample is drawn from answerable queries only.
    """
    pools = group_pools(pool, passage_max_words)
    gold: dict[str, str] = {}
    for q in pools:
        golds = [a for a in answers.get(q.query_id, []) if a.strip()]
        if not golds:
            raise ValueError(f"query {q.query_id!r} has no gold answer for the judge")
        gold[q.query_id] = golds[0]
    # `shuffled` (seed 0) splits the pool evenly, each passage shown once, in a seeded order
    windows = {
        q.query_id: relsel_windows(q.is_human, window_size, "shuffled", 0, q.query_id)
        for q in pools
    }
    return judge_windows(
        get_step(JUDGE_STEP),
        template,
        pools,
        windows,
        gold,
        generator,
        lambda n: sampling,
        desc="hybrid judge",
    )


def golden_qrels(
    labels: pd.DataFrame, qrels: pd.DataFrame, query_ids: Sequence[str], split: str
) -> pd.DataFrame:
    """QRELS of the Hybrid Test: human positives (grade kept) + judge positives (grade 1).

    ``qrels`` are the split's human judgements; ``query_ids`` the sampled queries (a query the
    judge saw no passage for keeps its human positives).
    """
    wanted = set(map(str, query_ids))
    human = qrels[qrels["query_id"].astype(str).isin(wanted) & (qrels["relevance"] > 0)]
    human = human[["query_id", "doc_id", "relevance"]].astype({"query_id": str, "doc_id": str})
    judged = labels[labels["selected"] & labels["query_id"].astype(str).isin(wanted)]
    judged = judged[["query_id", "doc_id"]].astype(str).assign(relevance=1)
    golden = pd.concat([human, judged], ignore_index=True)
    golden = golden.groupby(["query_id", "doc_id"], as_index=False)["relevance"].max()
    golden["split"] = split
    return golden.sort_values(["query_id", "doc_id"], kind="stable").reset_index(drop=True)


def summary(labels: pd.DataFrame, golden: pd.DataFrame) -> dict[str, Any]:
    """Counts for the manifest and the log: pool size, judge and golden positives per query."""
    queries = labels["query_id"].nunique()
    judge = labels[labels["selected"]]
    agree = judge["is_human_positive"].sum()
    humans = labels["is_human_positive"].sum()
    return {
        "queries": int(queries),
        "pooled_passages": int(len(labels)),
        "judge_positives": int(len(judge)),
        "human_positives_pooled": int(humans),
        "judge_recall_of_human": float(agree / humans) if humans else None,
        "golden_per_query": float(len(golden) / queries) if queries else 0.0,
    }


def judge_files(
    *,
    pool_path: str,
    questions_path: str,
    qrels_path: str,
    split: str,
    judge: Mapping[str, Any],
    template: PromptTemplate,
    sampling: Mapping[str, Any],
    window_size: int,
    passage_max_words: int,
    chunk_size: int,
    cache_dir: str,
    writer: str,
    out: Mapping[str, str],
) -> dict[str, Any]:
    """Rule hybrid_judge: judge the pool, write labels, raw calls, golden qrels, a manifest.

    ``judge`` is an LLM job spec (:func:`utilann.plan.llm_job`: model, path, engine, env,
    chat_template_kwargs, backend, transformers); ``split`` the source split (the golden
    qrels are ``<split>-hybrid``); ``out`` holds the ``labels``, ``raw``, ``qrels`` and
    ``manifest`` paths.
    """
    from utilann.datasets import split_qrels
    from utilann.io import read_table, write_json, write_table
    from utilann.llm.batch import open_generator
    from utilann.llm.engine import EngineSpec
    from utilann.plan import HYBRID_SUFFIX

    pool = read_table(pool_path, schemas.POOLS.names)
    questions = read_table(questions_path)
    answers = dict(zip(questions["query_id"].astype(str), map(list, questions["answers"])))
    with open_generator(EngineSpec.from_job(judge), cache_dir, writer, chunk_size) as generator:
        result = judge_pool(
            pool, answers, template, generator, sampling, window_size, passage_max_words
        )
        identity = generator.identity
    human = split_qrels(read_table(qrels_path), split)
    golden = golden_qrels(result.labels, human, list(answers), f"{split}{HYBRID_SUFFIX}")
    meta = {
        "model": judge["model"],
        **identity.run_metadata(),
        "template": {"id": template.id, "sha256": template.sha256},
        "sampling": dict(sampling),
        "window_size": window_size,
        "passage_max_words": passage_max_words,
        "split": split,
    }
    write_table(result.labels, out["labels"], schemas.LABELS, meta)
    write_table(result.raw, out["raw"], schemas.RAW, meta)
    write_table(golden, out["qrels"], schemas.QRELS, meta)
    manifest = {
        **meta,
        "engine": dict(judge["engine"]),
        "steps": {JUDGE_STEP: result.stats.as_dict()},
        "pool": summary(result.labels, golden),
        "engine_started": generator.started,
    }
    write_json(manifest, out["manifest"])
    return manifest
