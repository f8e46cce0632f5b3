"""How far an LLM judge agrees with humans and with itself: the calibration figures.

Three measures that the paper's Table 1 (precision/recall of the human positive) does not
give: chance-corrected agreement with binarised human judgements (Cohen's kappa), the
selection rate by display position (position bias: with passages shuffled, a judge without
bias selects every position equally often) and the overlap of a query's selections under two
display orders (a judge that reads the passages gives the same answer in either order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import pandas as pd

from utilann.annotate import steps as registry


def cohen_kappa(judge: Sequence[bool], human: Sequence[bool]) -> float:
    """Cohen's kappa of two binary label sequences; NaN where it is undefined.

    Kappa is ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e`` the
    agreement expected from the two raters' marginals. When both give one and the same label
    to every item, ``p_e`` is 1 and kappa is 0/0: NaN (as scikit-learn's
    ``cohen_kappa_score``), so that such a judge is never reported as agreeing. Written out
    here because scikit-learn is in none of the jobs' environments (envs/*.yaml).
    """
    if len(judge) != len(human):
        raise ValueError(f"kappa needs paired labels, got {len(judge)} and {len(human)}")
    n = len(judge)
    if n == 0:
        return math.nan
    a, b = [bool(x) for x in judge], [bool(x) for x in human]
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def jaccard(a: set[str], b: set[str]) -> float:
    """``|a & b| / |a | b|``; two empty selections agree fully (1.0)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def mean_order_jaccard(selections: Mapping[str, Mapping[str, set[str]]]) -> float:
    """Mean Jaccard of each query's selections over every pair of display orders.

    ``selections[order][query_id]`` is the set of passages selected under ``order``; a query
    missing from an order selected nothing there. NaN with fewer than two orders.
    """
    orders = sorted(selections)
    queries = sorted({q for sel in selections.values() for q in sel})
    values = [
        jaccard(selections[x].get(q, set()), selections[y].get(q, set()))
        for x, y in combinations(orders, 2)
        for q in queries
    ]
    return sum(values) / len(values) if values else math.nan


def position_rates(raw: pd.DataFrame) -> pd.DataFrame:
    """Selection rate by display position, per selection and ranking step of a RAW table.

    A passage at (1-based) display position p of a call counts as chosen if a selection step
    selected it, or if a ranking step ranked it first. Failed parses show passages but choose
    none, as they do in the labels. Columns: step, position, shown, chosen, rate.
    """
    rows = []
    for step in [s for s in registry.STEPS if s in set(raw["step"])]:
        fmt = registry.get_step(step).answer_format
        if fmt == "text":
            continue
        shown: dict[int, int] = {}
        chosen: dict[int, int] = {}
        for doc_ids, picked in raw.loc[raw["step"] == step, ["doc_ids", "parsed_doc_ids"]].values:
            picked = list(picked)
            hits = set(picked[:1]) if fmt == "ranking" else set(picked)
            for position, doc in enumerate(doc_ids, start=1):
                shown[position] = shown.get(position, 0) + 1
                chosen[position] = chosen.get(position, 0) + (doc in hits)
        rows += [
            {
                "step": step,
                "position": p,
                "shown": shown[p],
                "chosen": chosen[p],
                "rate": chosen[p] / shown[p],
            }
            for p in sorted(shown)
        ]
    return pd.DataFrame(rows, columns=["step", "position", "shown", "chosen", "rate"])
