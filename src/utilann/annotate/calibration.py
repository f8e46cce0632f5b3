"""Annotation calibration: the judge on human-judged queries before the full annotation.

A full annotation costs tens to hundreds of GPU-hours in the paper's setting (Table 17), and
whether the judge's outputs parse or agree with humans is otherwise known only afterwards.
The calibration runs the annotation's own cascade (same prompts, sampling, decoding, engine
and LLM cache) on small sets that have human judgements - a sample of the training pools,
whose human positive is the target of the paper's Table 1, and graded test qrels such as
TREC DL19 - in several shuffled display orders, and reports per strategy: precision/recall of
the human positive (Table 1), Cohen's kappa against the binarised judgements, the selection
rate by display position, the agreement of two display orders, parse outcomes and tokens per
call (:mod:`utilann.annotate.agreement`). :func:`check_gate` turns configured bars into a
stop before the full annotation starts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from utilann.annotate.agreement import cohen_kappa, mean_order_jaccard, position_rates
from utilann.annotate.cascade import Cascade, CascadeSettings
from utilann.annotate.report import annotation_report, markdown_table, step_summary
from utilann.labels import derive_positives
from utilann.llm.batch import CachedGenerator
from utilann.pools import sample_queries
from utilann.schemas import CALIBRATION_REPORT, POOLS

GATE_BARS = {
    "min_kappa": "kappa",
    "min_precision": "precision",
    "min_recall": "recall",
    "min_parse_rate": "parse_rate",
    "min_order_agreement": "order_jaccard",
}
"""``annotation.calibration.gate`` keys and the CALIBRATION_REPORT column each one bounds."""


class CalibrationGateError(RuntimeError):
    """The judge is below a configured bar: the full annotation must not start."""


def training_set(pools: pd.DataFrame, max_queries: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of the training pools (POOLS): the queries the full annotation will
    judge, so that a calibration call made in the annotation's own display order is reused
    from the cache by the full annotation."""
    chosen = set(sample_queries(list(pools["query_id"].astype(str)), max_queries, seed))
    return pools[pools["query_id"].astype(str).isin(chosen)].reset_index(drop=True)


def graded_set(
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    corpus: pd.DataFrame,
    min_relevance: int,
    pool_size: int,
    max_queries: int | None,
    seed: int,
) -> pd.DataFrame:
    """Pools (POOLS) of judged passages only, from graded qrels such as TREC DL19.

    Each sampled query (among those with a passage of grade >= ``min_relevance`` in the
    corpus) gets a seeded sample of at most ``pool_size`` of its judged passages;
    ``is_human_positive`` is the binarised grade (TREC DL passage: grade >= 2 is relevant, as
    for the track's binary measures) and ``source_rank`` the grade itself. Unjudged passages
    never enter, so every label the judge gives can be compared with a human one.
    """
    docs = corpus.set_index("doc_id")
    judged = qrels[qrels["doc_id"].isin(docs.index)]
    relevant = judged.loc[judged["relevance"] >= min_relevance, "query_id"].astype(str)
    text = dict(zip(queries["query_id"].astype(str), queries["text"], strict=True))
    rows = []
    for qid in sample_queries(list(relevant), max_queries, seed):
        grades = judged[judged["query_id"].astype(str) == qid].sort_values("doc_id")
        picked = list(zip(grades["doc_id"], grades["relevance"], strict=True))
        if len(picked) > pool_size:
            picked = random.Random(f"{seed}:{qid}").sample(picked, pool_size)
        for position, (doc_id, grade) in enumerate(picked):
            rows.append(
                {
                    "query_id": qid,
                    "query": text[qid],
                    "position": position,
                    "doc_id": str(doc_id),
                    "title": docs.at[doc_id, "title"],
                    "text": docs.at[doc_id, "text"],
                    "is_human_positive": int(grade) >= min_relevance,
                    "source": "qrels",
                    "source_rank": int(grade),
                }
            )
    if not rows:
        raise ValueError(
            f"no query has a passage of grade >= {min_relevance} in the corpus: nothing to "
            "calibrate on (check the set's dataset, split and min_relevance)"
        )
    return pd.DataFrame(rows, columns=POOLS.names)


@dataclass
class CalibrationRun:
    """Labels and raw calls of every (set, order), and per-run step statistics."""

    labels: pd.DataFrame
    raw: pd.DataFrame
    steps: dict[str, dict[str, Any]]


def calibrate(
    settings: CascadeSettings,
    generator: CachedGenerator,
    sets: Mapping[str, pd.DataFrame],
    order_seeds: Sequence[int],
) -> CalibrationRun:
    """Run the cascade of ``settings`` on every set in every shuffled order (one engine).

    Only the display order differs from the annotation (``position_policy: shuffled`` with
    each of ``order_seeds``): a call whose prompt equals one of the annotation's is one cache
    entry for both.
    """
    labels, raw, steps = [], [], {}
    for name, pools in sets.items():
        for seed in order_seeds:
            run = Cascade(replace(settings, position_policy="shuffled", seed=seed), generator)
            result = run.run(pools)
            labels.append(result.labels.assign(set=name, order_seed=seed))
            raw.append(result.raw.assign(set=name, order_seed=seed))
            steps[f"{name}/{seed}"] = {s: st.as_dict() for s, st in result.stats.items()}
    return CalibrationRun(
        pd.concat(labels, ignore_index=True), pd.concat(raw, ignore_index=True), steps
    )


def _trials(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one query id per (order, query): the Table-1 code then pools the orders."""
    return df.assign(query_id=df["order_seed"].astype(str) + "/" + df["query_id"].astype(str))


def _position_split(positions: pd.DataFrame, step: str) -> tuple[float, float]:
    own = positions[positions["step"] == step]
    first, rest = own[own["position"] == 1], own[own["position"] > 1]

    def rate(rows: pd.DataFrame) -> float:
        shown = rows["shown"].sum()
        return float(rows["chosen"].sum() / shown) if shown else math.nan

    return rate(first), rate(rest)


def _set_rows(
    name: str, labels: pd.DataFrame, raw: pd.DataFrame, threshold: float, positions: pd.DataFrame
) -> list[dict[str, Any]]:
    trials = _trials(labels)
    table1 = annotation_report(trials, _trials(raw), [threshold]).set_index("strategy")
    rows = []
    for strategy in table1.index:
        t = table1.loc[strategy]
        own = trials[trials["strategy"] == strategy]
        chosen = derive_positives(trials, strategy, threshold)
        picked = set(zip(chosen["query_id"], chosen["doc_id"], strict=True))
        judge = [(q, d) in picked for q, d in zip(own["query_id"], own["doc_id"], strict=True)]
        by_order = {
            seed: derive_positives(rows_, strategy, threshold).groupby("query_id")["doc_id"]
            for seed, rows_ in labels.groupby("order_seed")
        }
        selections = {
            seed: {str(q): set(d) for q, d in groups} for seed, groups in by_order.items()
        }
        calls = raw[raw["step"] == strategy]
        first, other = _position_split(positions, strategy)
        rows.append(
            {
                "set": name,
                "name": t["name"],
                "strategy": strategy,
                "queries": labels["query_id"].nunique(),
                "orders": labels["order_seed"].nunique(),
                "human_positives": int(t["human_positives"]),
                "positives": int(t["positives"]),
                "precision": float(t["precision"]),
                "recall": float(t["recall"]),
                "kappa": cohen_kappa(judge, own["is_human_positive"].astype(bool).tolist()),
                "order_jaccard": mean_order_jaccard(selections),
                "first_position_rate": first,
                "other_position_rate": other,
                "calls": int(t["calls"]),
                "failed_parses": int(t["failed_parses"]),
                "repaired_parses": int(t["repaired_parses"]),
                "parse_rate": 1 - t["failed_parses"] / t["calls"] if t["calls"] else math.nan,
                "prompt_tokens_per_call": calls["prompt_tokens"].mean() if len(calls) else math.nan,
                "output_tokens_per_call": calls["output_tokens"].mean() if len(calls) else math.nan,
            }
        )
    return rows


def calibration_report(
    labels: pd.DataFrame, raw: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The CALIBRATION_REPORT rows, the CALIBRATION_POSITIONS rows and per-set step figures.

    ``labels`` and ``raw`` are CALIBRATION_LABELS / CALIBRATION_RAW tables; UtilRank is cut at
    ``threshold`` (k %), the cut the gate judges.
    """
    rows, positions, steps = [], [], []
    for name in dict.fromkeys(labels["set"]):
        set_labels, set_raw = labels[labels["set"] == name], raw[raw["set"] == name]
        rates = position_rates(set_raw)
        rows += _set_rows(name, set_labels, set_raw, threshold, rates)
        positions.append(rates.assign(set=name))
        summary = step_summary(set_raw)
        summary.insert(0, "set", name)
        summary["prompt_tokens_per_call"] = summary["prompt_tokens"] / summary["calls"]
        summary["output_tokens_per_call"] = summary["output_tokens"] / summary["calls"]
        steps.append(summary)
    report = pd.DataFrame(rows, columns=CALIBRATION_REPORT.names)
    position_cols = ["set", "step", "position", "shown", "chosen", "rate"]
    return report, pd.concat(positions, ignore_index=True)[position_cols], pd.concat(steps)


def gate_checks(report: pd.DataFrame, bars: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """Every (set, strategy) figure against every configured bar (``None`` = no bar).

    An undefined figure (NaN, e.g. kappa of a judge that selected nothing) fails its bar: it
    cannot show that the judge reaches it.
    """
    unknown = sorted(set(bars) - set(GATE_BARS))
    if unknown:
        raise ValueError(f"unknown calibration gate keys {unknown}; known: {sorted(GATE_BARS)}")
    checks = []
    for key, bar in bars.items():
        if bar is None:
            continue
        for row in report.itertuples(index=False):
            value = float(getattr(row, GATE_BARS[key]))
            checks.append(
                {
                    "set": row.set,
                    "name": row.name,
                    "bar": key,
                    "figure": GATE_BARS[key],
                    "value": value,
                    "threshold": float(bar),
                    "passed": not math.isnan(value) and value >= bar,
                }
            )
    return checks


def gate_message(checks: Sequence[Mapping[str, Any]]) -> str:
    """One line per check, failed ones marked, for the log and the error."""
    lines = []
    for c in checks:
        value = "undefined" if math.isnan(c["value"]) else f"{c['value']:.3f}"
        mark = "ok  " if c["passed"] else "FAIL"
        relation = ">=" if c["passed"] else "<"
        lines.append(
            f"  {mark} {c['set']} {c['name']}: {c['figure']} {value} {relation} "
            f"{c['bar']} {c['threshold']:g}"
        )
    return "\n".join(lines)


def check_gate(
    report: pd.DataFrame, bars: Mapping[str, float | None], where: str
) -> list[dict[str, Any]]:
    """The checks of :func:`gate_checks`; raises :class:`CalibrationGateError` listing every
    figure against its bar when any fails. ``where`` names the report for the user."""
    checks = gate_checks(report, bars)
    failed = [c for c in checks if not c["passed"]]
    if failed:
        raise CalibrationGateError(
            f"the annotator is below {len(failed)} of {len(checks)} calibration bars "
            "(annotation.calibration.gate), so the full annotation is not started:\n"
            f"{gate_message(checks)}\nFigures: {where}. Lower or remove a bar "
            "(null) to annotate anyway, or change the model, prompts or decoding."
        )
    return checks


def render_markdown(
    report: pd.DataFrame,
    positions: pd.DataFrame,
    steps: pd.DataFrame,
    meta: Mapping[str, Any],
) -> str:
    """The calibration report as Markdown: figures per strategy, position bias, LLM steps."""
    quality = report.drop(columns=["strategy"]).copy()
    for col in ("precision", "recall"):
        quality[col] = 100 * quality[col]
    wide = positions.pivot_table(
        index=["set", "step"], columns="position", values="rate", sort=False
    ).reset_index()
    wide.columns = [c if isinstance(c, str) else f"@{c}" for c in wide.columns]
    settings = "\n".join(f"- **{k}**: `{v}`" for k, v in sorted(meta.items()))
    return (
        "# Annotation calibration report\n\n"
        "The annotation cascade on calibration sets with human judgements, every query in "
        f"each display order of `order_seeds`, before the full annotation. Precision and "
        "recall (%) of the human positive (Table 1), Cohen's kappa against the binarised human "
        "labels, mean Jaccard overlap of the positives under two display orders, selection "
        "rate at display position 1 vs the others (a ranking: ranked first), parse outcomes "
        f"and tokens per call.\n\n{markdown_table(quality)}\n\n"
        "## Selection rate by display position\n\n"
        f"{markdown_table(wide)}\n\n## LLM steps\n\n{markdown_table(steps)}\n\n"
        f"## Settings\n\n{settings}\n"
    )
