"""The audits' statistics: a rate with its Wilson interval, and a paired comparison.

A rate here is a count of binary judgements (a negative judged useful, a passage selected)
over the judgements made. Its interval is the Wilson score interval
(:meth:`scipy.stats.binomtest` ``proportion_ci(method="wilson")``): unlike the normal
approximation it stays inside [0, 1] and is usable for the small counts of a sampled audit.
It treats every judgement as independent; passages of one query share the query's prompt,
so for strongly clustered judgements the interval is somewhat too narrow.

Paired outcomes (the same pool judged with and without an injected instruction) are compared
by their discordant pairs: ``b`` = selected only with the instruction, ``c`` = only without;
the exact McNemar test is a two-sided binomial test of ``b`` out of ``b + c`` at 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with its Wilson interval (``rate``, ``low``, ``high`` are NaN for n = 0)."""

    k: int
    n: int
    rate: float
    low: float
    high: float


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    """``k`` successes of ``n`` as a :class:`Rate` with the Wilson score interval."""
    if not 0 <= k <= n:
        raise ValueError(f"a rate needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        nan = float("nan")
        return Rate(0, 0, nan, nan, nan)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Rate(k, n, k / n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class Paired:
    """Paired binary outcomes: the discordant counts and the exact McNemar p-value."""

    pairs: int
    only_treated: int
    only_control: int
    p_value: float


def mcnemar(treated: list[bool], control: list[bool]) -> Paired:
    """Compare paired outcomes (``treated[i]`` and ``control[i]`` judge the same item)."""
    if len(treated) != len(control):
        raise ValueError(f"paired outcomes differ in length: {len(treated)} vs {len(control)}")
    b = sum(t and not c for t, c in zip(treated, control, strict=True))
    c = sum(c and not t for t, c in zip(treated, control, strict=True))
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return Paired(len(treated), b, c, float(p))
