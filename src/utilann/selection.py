"""Which queries get human labels: the human share of a curriculum stage 2, chosen on purpose.

The paper's curriculum (paper 3.3, Figure 3a) continues an LLM-labelled run on the human labels
of a random x % of the training queries. When a person can label only x % of them, which ones
matters: labels are worth most where the LLM annotator is unsure. A :class:`Selector` scores
every query of the population from its LLM labels (higher = ask a human first); the share is
the top ``max(1, round(x % x population))`` queries, ties broken by a seeded shuffle. The
``random`` selector draws exactly the queries that the training set's own ``query_ratio``
sample draws with the same seed (:func:`utilann.train.data.sample_fraction`), so a random and
an active share of one budget differ only in how they were chosen.

Selectors (one :func:`register` call each):

``random``            a seeded random share (the paper's CL).
``relsel_utilsel``    disagreement between RelSel and UtilSel: the Jaccard distance of their
                      positives. UtilSel only sees RelSel's picks, so this is the share of
                      RelSel's picks that utility judging rejected; a query without any LLM
                      positive counts as full disagreement (the annotator gave it nothing).
``utilsel_utilrank``  disagreement between UtilSel and UtilRank's top k % (the run's
                      ``utilrank_threshold``), likewise.

Disagreement between two display orders, or the judge's token confidence, would need a second
RelSel pass or log-probabilities from the engine; they are not built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from utilann.labels import derive_positives

Scorer = Callable[[pd.DataFrame, Sequence[str], float | None], pd.Series]


@dataclass(frozen=True)
class Selector:
    """How queries are ranked for human labelling.

    Attributes:
        name: the run key ``query_selection`` value.
        strategies: the annotation strategies whose labels it compares (none for ``random``).
        score: ``(labels, query_ids, threshold) -> uncertainty per query`` (None = random).
    """

    name: str
    strategies: tuple[str, ...] = ()
    score: Scorer | None = None

    @property
    def needs_labels(self) -> bool:
        return bool(self.strategies)


SELECTORS: dict[str, Selector] = {}


def register(selector: Selector) -> Selector:
    if selector.name in SELECTORS:
        raise ValueError(f"query selector {selector.name!r} is registered twice")
    SELECTORS[selector.name] = selector
    return selector


def get_selector(name: str) -> Selector:
    try:
        return SELECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown query_selection {name!r}; expected one of {list(SELECTORS)}"
        ) from None


def jaccard_distance(a: set[str], b: set[str]) -> float:
    """1 - |a & b| / |a | b|; two empty sets are 1 (no label to agree on)."""
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 1.0


def _disagreement(first: str, second: str) -> Scorer:
    """Jaccard distance per query between the positives of two strategies."""

    def score(labels: pd.DataFrame, query_ids: Sequence[str], threshold: float | None):
        sets = []
        for strategy in (first, second):
            positives = derive_positives(labels, strategy, threshold)
            sets.append(positives.groupby("query_id")["doc_id"].agg(set).to_dict())
        return pd.Series(
            [jaccard_distance(sets[0].get(q, set()), sets[1].get(q, set())) for q in query_ids],
            index=list(query_ids),
            dtype=float,
        )

    return score


register(Selector("random"))
register(Selector("relsel_utilsel", ("relsel", "utilsel"), _disagreement("relsel", "utilsel")))
register(
    Selector("utilsel_utilrank", ("utilsel", "utilrank"), _disagreement("utilsel", "utilrank"))
)


def share_size(population: int, ratio: float) -> int:
    """Queries in a ``ratio`` share: at least one, all for ratio 1 (as ``sample_fraction``)."""
    if population == 0:
        return 0
    return population if ratio >= 1 else max(1, round(ratio * population))


def select_queries(
    population: pd.DataFrame,
    ratio: float,
    seed: int,
    selector: str,
    labels: pd.DataFrame | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The SELECTION table of ``population`` (``query_id``, ``origin``), best first.

    Args:
        ratio: the human share of the population (the run's ``query_ratio``).
        seed: the random share's seed, and the tie-break of scored selectors.
        labels: the LABELS table (needed by scored selectors).
        threshold: UtilRank's k % (``utilsel_utilrank``).
    """
    from utilann.train.data import sample_fraction

    chosen = get_selector(selector)
    pop = population.astype({"query_id": str}).drop_duplicates("query_id")
    pop = pop.sort_values("query_id").reset_index(drop=True)
    ids = pop["query_id"].tolist()
    n = share_size(len(ids), ratio)
    if chosen.score is None:
        picked = sample_fraction(ids, ratio, seed)
        order = sorted(picked)  # sample_fraction's set has no order; ids keep it stable
        score = pd.Series(np.nan, index=ids)
    else:
        if labels is None:
            raise ValueError(f"query_selection {selector!r} needs the LLM labels")
        score = chosen.score(labels.astype({"query_id": str}), ids, threshold)
        tie = np.random.default_rng(seed).permutation(len(ids))
        ranked = sorted(range(len(ids)), key=lambda i: (-score.iloc[i], tie[i]))
        order = [ids[i] for i in ranked[:n]]
        picked = set(order)
    rank = {q: r for r, q in enumerate(order, start=1)}
    table = pop.assign(
        score=[float(score[q]) for q in ids],
        rank=[rank.get(q) for q in ids],
        selected=[q in picked for q in ids],
    )
    table["rank"] = table["rank"].astype("Int32")
    return table[["query_id", "origin", "score", "rank", "selected"]]
