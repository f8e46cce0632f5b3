"""Batch construction: which positives and negatives of a query form its group this epoch.

A batch is ``batch_size`` queries, each with a group of ``group_size`` passages (its sampled
positives first, then sampled hard negatives); every query also sees the other groups of the
batch as in-batch negatives (:mod:`utilann.train.losses`). All randomness is drawn from
generators seeded by (seed, query, epoch), so a group does not depend on batch order, process
count or what other queries were sampled: runs are reproducible and resumable per epoch.

Positive sampling (paper App. B.2):
* ``single``: one positive, the rest negatives only. The positive rotates through the query's
  positives across epochs from a seeded per-query offset (the authors' ``data.py``:
  ``positives[(hash + epoch) % n]``), and the other positives are never in the group. This is
  SingleLH's and Rand1LH's input (Human, curriculum stage 2, Rand1LH on LLM labels).
* ``pos_one``: the paper's Pos-one (the authors' ``data_shuffle_pos.py``): the same rotating
  positive first, then the rest of the group drawn without replacement from the query's
  *other positives and its negatives* together; the drawn positives are flagged, so the
  multi-positive losses see them. Used for CL stage 1 (App. D.2).
* ``pos_all``: all positives, capped at ``group_size - 1`` so one negative remains (a seeded
  subset per epoch when there are more).
* ``pos_avg``: the training set's average number of positives (rounded, at least 1), capped by
  the query's own count and ``group_size - 1``.

A group also carries each passage's teacher utility when the training set has one (label
source ``replug``): :class:`~utilann.train.losses.kl_div.KLDiv` reads it instead of the flags.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from utilann.train.data import TrainQuery
from utilann.train.settings import POSITIVE_SAMPLING


def query_rng(seed: int, query_id: str, *extra: int) -> np.random.Generator:
    """Generator seeded by (seed, query, ...) with a process-independent query hash."""
    return np.random.default_rng([seed, zlib.crc32(query_id.encode("utf-8")), *extra])


@dataclass(frozen=True)
class Group:
    """The passages one query sees in its own group, positives flagged."""

    query_id: str
    doc_ids: tuple[str, ...]
    positive: tuple[bool, ...]
    utility: tuple[float, ...] | None = None


class GroupSampler:
    """Builds each query's group for an epoch.

    Args:
        strategy: one of :data:`POSITIVE_SAMPLING`.
        group_size: passages per group (m + 1 in the paper; 16 there, 8 in the authors' default).
        seed: base seed.
        queries: the whole training set; used for ``pos_avg``'s average and for the fallback
            negatives of a query whose own pool has none.
    """

    def __init__(
        self, strategy: str, group_size: int, seed: int, queries: Sequence[TrainQuery]
    ) -> None:
        if strategy not in POSITIVE_SAMPLING:
            raise ValueError(f"positive sampling must be one of {POSITIVE_SAMPLING}: {strategy!r}")
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a positive and a negative): {group_size}")
        self.strategy = strategy
        self.group_size = group_size
        self.seed = seed
        with_pos = [len(q.positives) for q in queries if q.positives]
        self.avg_positives = max(1, round(float(np.mean(with_pos)))) if with_pos else 1
        self._queries = queries

    @cached_property
    def all_passages(self) -> tuple[str, ...]:
        """Every passage of the training set, sorted (built only if a query lacks negatives)."""
        return tuple(sorted({d for q in self._queries for d in q.positives + q.negatives}))

    def n_positives(self, query: TrainQuery) -> int:
        """How many positives go into this query's group."""
        cap = {
            "single": 1,
            "pos_one": 1,
            "pos_all": self.group_size - 1,
            "pos_avg": self.avg_positives,
        }
        return min(len(query.positives), cap[self.strategy], self.group_size - 1)

    def group(self, query: TrainQuery, epoch: int) -> Group:
        """The query's group for ``epoch``: sampled positives first, then the rest."""
        rng = query_rng(self.seed, query.query_id, epoch)
        k = self.n_positives(query)
        if self.strategy in ("single", "pos_one") and k:
            offset = int(query_rng(self.seed, query.query_id).integers(len(query.positives)))
            positives = [query.positives[(offset + epoch) % len(query.positives)]]
        elif k < len(query.positives):
            positives = [
                query.positives[i]
                for i in sorted(rng.choice(len(query.positives), k, replace=False))
            ]
        else:
            positives = list(query.positives)
        if self.strategy == "pos_one":
            # The rest of the group comes from the other positives and the negatives together.
            others = [d for d in query.positives if d not in positives] + list(query.negatives)
        else:
            others = list(query.negatives)
        rest = self._fill(query, others, self.group_size - len(positives), rng)
        doc_ids = tuple(positives + rest)
        is_positive = set(query.positives)
        return Group(
            query_id=query.query_id,
            doc_ids=doc_ids,
            positive=tuple(d in is_positive for d in doc_ids),
            utility=(tuple(query.utility.get(d, 0.0) for d in doc_ids) if query.utility else None),
        )

    def _fill(
        self, query: TrainQuery, candidates: list[str], need: int, rng: np.random.Generator
    ) -> list[str]:
        """``need`` of ``candidates`` without replacement; a small pool is topped up
        deterministically.

        Too few candidates are cycled in a seeded order (repeats are better than inventing
        labels); a query with none borrows other queries' passages, as the authors' loaders
        fall back to random corpus passages.
        """
        if len(candidates) >= need:
            return [candidates[i] for i in rng.choice(len(candidates), need, replace=False)]
        if candidates:
            order = [candidates[i] for i in rng.permutation(len(candidates))]
            return [order[i % len(order)] for i in range(need)]
        exclude = set(query.positives)
        borrowed = [d for d in self.all_passages if d not in exclude]
        if len(borrowed) < need:
            raise ValueError(
                f"query {query.query_id!r} has no negatives and the training set holds only "
                f"{len(borrowed)} other passages for a group of {self.group_size}"
            )
        return [borrowed[i] for i in rng.choice(len(borrowed), need, replace=False)]


def epoch_batches(
    n_queries: int, batch_size: int, epoch: int, seed: int, drop_last: bool = False
) -> Iterator[list[int]]:
    """Indices of the queries of each batch of ``epoch`` (a seeded shuffle per epoch).

    ``drop_last`` is for distributed training, where every rank must gather equal shapes.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_queries)
    for start in range(0, n_queries, batch_size):
        batch = order[start : start + batch_size].tolist()
        if len(batch) == batch_size or not drop_last:
            yield batch


def n_batches(n_queries: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches :func:`epoch_batches` yields per epoch."""
    return n_queries // batch_size if drop_last else -(-n_queries // batch_size)
