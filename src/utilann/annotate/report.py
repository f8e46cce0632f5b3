"""The annotation report: quality against human positives and cost, per strategy (Table 1).

Positives come from :func:`utilann.labels.derive_positives`, i.e. exactly what training will
see; UtilRank is cut at every configured threshold from the stored ranks (no LLM call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from utilann.annotate import steps as registry
from utilann.annotate.merge import empty_queries
from utilann.labels import derive_positives
from utilann.schemas import ANNOTATION_REPORT


def _quality(labels: pd.DataFrame, strategy: str, threshold: float | None) -> dict[str, Any]:
    rows = labels[labels["strategy"] == strategy]
    queries = rows["query_id"].nunique()
    human = rows.loc[rows["is_human_positive"].astype(bool), ["query_id", "doc_id"]]
    positives = derive_positives(rows, strategy, threshold)
    hits = len(positives.merge(human.drop_duplicates(), on=["query_id", "doc_id"]))
    return {
        "queries": queries,
        "human_positives": len(human),
        "positives": len(positives),
        "avg_positives": len(positives) / queries if queries else float("nan"),
        "precision": hits / len(positives) if len(positives) else float("nan"),
        "recall": hits / len(human) if len(human) else float("nan"),
    }


def _cost(raw: pd.DataFrame, strategy: str) -> dict[str, Any]:
    own = raw[raw["step"] == strategy]
    cascade = raw[raw["step"].isin(registry.cascade_steps([strategy]))]
    prompt, output = int(cascade["prompt_tokens"].sum()), int(cascade["output_tokens"].sum())
    seconds = float(cascade["gen_seconds"].sum())
    return {
        "calls": len(own),
        "failed_parses": int((own["parse_status"] == "failed").sum()),
        "repaired_parses": int((own["parse_status"] == "repaired").sum()),
        "prompt_tokens": prompt,
        "output_tokens": output,
        "wall_seconds": seconds,
        "tokens_per_second": (prompt + output) / seconds if seconds > 0 else float("nan"),
    }


def annotation_report(
    labels: pd.DataFrame,
    raw: pd.DataFrame,
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """One ANNOTATION_REPORT row per strategy (a thresholded one, UtilRank, per threshold)."""
    rows = []
    for strategy in [s for s in registry.strategies() if s in set(labels["strategy"])]:
        cuts = [float(t) for t in thresholds] if registry.uses_threshold(strategy) else [None]
        empty = len(empty_queries(labels, strategy))
        cost = _cost(raw, strategy)
        for threshold in cuts:
            name = strategy if threshold is None else f"{strategy}@{threshold:g}"
            rows.append(
                {
                    "name": name,
                    "strategy": strategy,
                    "threshold": threshold,
                    **_quality(labels, strategy, threshold),
                    "empty_queries": empty,
                    **cost,
                }
            )
    return pd.DataFrame(rows, columns=ANNOTATION_REPORT.names)


def step_summary(raw: pd.DataFrame) -> pd.DataFrame:
    """Per LLM step: calls, cache use, parse outcomes and tokens."""
    steps = [s for s in registry.STEPS if s in set(raw["step"])]
    rows = []
    for step in steps:
        r = raw[raw["step"] == step]
        status = r["parse_status"].value_counts()
        rows.append(
            {
                "step": step,
                "calls": len(r),
                "generated": int((~r["from_cache"].astype(bool)).sum()),
                "cached": int(r["from_cache"].astype(bool).sum()),
                "ok": int(status.get("ok", 0)),
                "repaired": int(status.get("repaired", 0)),
                "failed": int(status.get("failed", 0)),
                "prompt_tokens": int(r["prompt_tokens"].sum()),
                "output_tokens": int(r["output_tokens"].sum()),
                "gen_seconds": round(float(r["gen_seconds"].sum()), 2),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3f}"
        return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(report: pd.DataFrame, steps: pd.DataFrame, meta: Mapping[str, Any]) -> str:
    """The report as Markdown: Table-1 style quality/cost, per-step table, run settings."""
    quality = report[
        [
            "name",
            "queries",
            "precision",
            "recall",
            "avg_positives",
            "empty_queries",
            "failed_parses",
            "prompt_tokens",
            "output_tokens",
            "wall_seconds",
            "tokens_per_second",
        ]
    ].copy()
    for col in ("precision", "recall"):
        quality[col] = 100 * quality[col]
    settings = "\n".join(f"- **{k}**: `{v}`" for k, v in sorted(meta.items()))
    return (
        "# LLM annotation report\n\n"
        "Precision and recall (%) of each strategy's positives against the human positives of "
        "the pools (micro-averaged over all annotated queries), positives per query, queries "
        "without any positive (training's `empty_policy` drops them by default), and the LLM "
        "cost of the whole cascade behind each strategy.\n\n"
        f"{markdown_table(quality)}\n\n## LLM steps\n\n{markdown_table(steps)}\n\n"
        f"## Settings\n\n{settings}\n"
    )
