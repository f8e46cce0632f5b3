"""How a query's candidate pool is cut into RelSel prompt windows, and how windows merge back.

The authors ran RelSel on 31 passages as two 16-passage prompts, each holding the human
positive as passage [1] plus 15 of the 30 negatives, and merged the two by keeping the human
positive's label from the first window (the authors' process.ipynb). ``fixed_first``
reproduces that (for any pool and window size: every window starts with all human positives,
negatives are split evenly in pool order). ``shuffled`` removes the position bias: the whole
pool is shuffled with a seed derived from ``(seed, query_id)`` and split evenly, so each
passage is shown exactly once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

POSITION_POLICIES = ("fixed_first", "shuffled")


def _even_split(items: list[int], parts: int) -> list[list[int]]:
    """Split ``items`` into ``parts`` consecutive chunks whose sizes differ by at most one."""
    base, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        chunks.append(items[start : start + size])
        start += size
    return chunks


def relsel_windows(
    is_human: Sequence[bool],
    window_size: int,
    policy: str,
    seed: int = 0,
    query_id: str = "",
) -> list[list[int]]:
    """Windows of pool indices (0-based, in display order) for one query's pool.

    Args:
        is_human: per pool passage (in pool order), whether it is a human positive.
        window_size: passages per prompt at most.
        policy: ``fixed_first`` or ``shuffled`` (module docstring).
        seed, query_id: make ``shuffled`` reproducible per query and independent of sharding.
    """
    if policy not in POSITION_POLICIES:
        raise ValueError(f"unknown position policy {policy!r}; expected one of {POSITION_POLICIES}")
    if window_size < 1:
        raise ValueError(f"window size must be >= 1, got {window_size}")
    n = len(is_human)
    if n == 0:
        return []
    if policy == "shuffled":
        order = list(range(n))
        random.Random(f"{seed}:{query_id}").shuffle(order)
        return _even_split(order, math.ceil(n / window_size))
    humans = [i for i in range(n) if is_human[i]]
    others = [i for i in range(n) if not is_human[i]]
    if not others:
        return _even_split(humans, math.ceil(len(humans) / window_size))
    room = window_size - len(humans)
    if room < 1:
        raise ValueError(
            f"query {query_id!r}: {len(humans)} human positives leave no room for negatives in a "
            f"window of {window_size} under fixed_first; raise annotation.window_size or use "
            "position_policy: shuffled"
        )
    return [humans + chunk for chunk in _even_split(others, math.ceil(len(others) / room))]


def merge_windows(
    windows: Sequence[Sequence[int]], selected: Sequence[set[int]]
) -> dict[int, bool]:
    """Per pool index, the label from the first window that showed it.

    ``selected[w]`` holds the pool indices selected in window ``w``. A passage repeated in later
    windows (the human positive under ``fixed_first``) keeps its first label, as the authors'
    ``ids_first + ids_last[1:]`` merge did.
    """
    labels: dict[int, bool] = {}
    for window, chosen in zip(windows, selected, strict=True):
        for index in window:
            labels.setdefault(index, index in chosen)
    return labels
