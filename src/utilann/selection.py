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
``display_orders``    disagreement between two display orders: RelSel run again over the
                      query's pool shuffled with two seeds (:mod:`utilann.evidence`, rule
                      ``annotate_orders``); the Jaccard distance of the two selections. A
                      judgement that changes when only the order of the passages changes is
                      position bias, not relevance.
``low_confidence``    the annotator's own confidence in its answer: the mean log-probability
                      per token of the judge step's answer text (``annotation.selection.
                      confidence.step``, RelSel by default) given its prompt, scored by the
                      engine (:mod:`utilann.evidence`, rule ``judge_confidence``); the score
                      is its negative, so the least confident queries are asked first. A query
                      without a scored answer (empty, or no call of that step) scores +inf.

What a selector reads is its :attr:`Selector.evidence`: ``labels`` (the annotation's LABELS),
``orders`` (the LABELS of the display-order passes), ``confidence`` (the CONFIDENCE table);
the workflow makes exactly those inputs of the selection job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from utilann.labels import derive_positives

#: What a selector may read (:class:`Evidence` fields), each one input of the selection job.
EVIDENCE = ("labels", "orders", "confidence")


@dataclass(frozen=True)
class Evidence:
    """The LLM outputs a selector scores queries from.

    Attributes:
        labels: the annotation's LABELS table.
        orders: one LABELS table (strategy ``relsel``) per display-order pass.
        confidence: the CONFIDENCE table of the judge step's answers.
    """

    labels: pd.DataFrame | None = None
    orders: Sequence[pd.DataFrame] = field(default_factory=tuple)
    confidence: pd.DataFrame | None = None


Scorer = Callable[[Evidence, Sequence[str], float | None], pd.Series]


@dataclass(frozen=True)
class Selector:
    """How queries are ranked for human labelling.

    Attributes:
        name: the run key ``query_selection`` value.
        strategies: the annotation strategies whose labels it compares (none for ``random``).
        score: ``(evidence, query_ids, threshold) -> uncertainty per query`` (None = random).
        evidence: what ``score`` reads (:data:`EVIDENCE`).
        description: what the score measures, for the report's human-share table.
    """

    name: str
    strategies: tuple[str, ...] = ()
    score: Scorer | None = None
    evidence: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.evidence) - set(EVIDENCE)
        if unknown:
            raise ValueError(f"query selector {self.name!r}: unknown evidence {sorted(unknown)}")
        if (self.score is None) != (not self.evidence):
            raise ValueError(f"query selector {self.name!r}: a score needs evidence, and back")

    def needs(self, evidence: str) -> bool:
        """Whether the selector reads ``evidence`` (one of :data:`EVIDENCE`)."""
        return evidence in self.evidence


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


def _positive_sets(labels: pd.DataFrame, strategy: str, threshold: float | None) -> dict:
    positives = derive_positives(labels.astype({"query_id": str}), strategy, threshold)
    return positives.groupby("query_id")["doc_id"].agg(set).to_dict()


def _jaccard_scores(first: dict, second: dict, query_ids: Sequence[str]) -> pd.Series:
    return pd.Series(
        [jaccard_distance(first.get(q, set()), second.get(q, set())) for q in query_ids],
        index=list(query_ids),
        dtype=float,
    )


def _disagreement(first: str, second: str) -> Scorer:
    """Jaccard distance per query between the positives of two strategies."""

    def score(evidence: Evidence, query_ids: Sequence[str], threshold: float | None):
        labels = _required(evidence.labels, "the LLM labels")
        return _jaccard_scores(
            _positive_sets(labels, first, threshold),
            _positive_sets(labels, second, threshold),
            query_ids,
        )

    return score


def _order_disagreement(evidence: Evidence, query_ids: Sequence[str], threshold: float | None):
    """Jaccard distance per query between RelSel's positives under two display orders."""
    if len(evidence.orders) != 2:
        raise ValueError(
            f"query_selection 'display_orders' needs two display-order passes, got "
            f"{len(evidence.orders)}"
        )
    first, second = (_positive_sets(o, "relsel", None) for o in evidence.orders)
    return _jaccard_scores(first, second, query_ids)


def _low_confidence(evidence: Evidence, query_ids: Sequence[str], threshold: float | None):
    """Minus the mean token log-probability of the judge's answers (+inf without one)."""
    table = _required(evidence.confidence, "the judge's confidence").astype({"query_id": str})
    mean = table.set_index("query_id")["mean_logprob"].to_dict()
    return pd.Series(
        [-mean[q] if q in mean and not math.isnan(mean[q]) else math.inf for q in query_ids],
        index=list(query_ids),
        dtype=float,
    )


def _required(table: pd.DataFrame | None, what: str) -> pd.DataFrame:
    if table is None:
        raise ValueError(f"this query_selection needs {what}")
    return table


register(Selector("random", description="a seeded random share (the paper's CL)"))
register(
    Selector(
        "relsel_utilsel",
        ("relsel", "utilsel"),
        _disagreement("relsel", "utilsel"),
        ("labels",),
        "Jaccard distance of RelSel's and UtilSel's positives",
    )
)
register(
    Selector(
        "utilsel_utilrank",
        ("utilsel", "utilrank"),
        _disagreement("utilsel", "utilrank"),
        ("labels",),
        "Jaccard distance of UtilSel's positives and UtilRank's top k %",
    )
)
register(
    Selector(
        "display_orders",
        ("relsel",),
        _order_disagreement,
        ("orders",),
        "Jaccard distance of RelSel's positives under two shuffled display orders of the pool",
    )
)
register(
    Selector(
        "low_confidence",
        (),
        _low_confidence,
        ("confidence",),
        "lowest mean token log-probability of the annotator's own answers (vLLM scoring)",
    )
)


def population(
    pools: pd.DataFrame,
    candidates: pd.DataFrame | None,
    origins: Sequence[str] | None,
) -> pd.DataFrame:
    """The queries a human share is chosen from: ``query_id`` and ``origin``, sorted.

    Every query of the POOLS table; in the new-corpus mode (``candidates``: the
    GENERATED_QUERIES table) with each query's origin, and, when ``origins`` is given
    (``newcorpus.oracle.origins``), only the queries of those origins.
    """
    table = pools[["query_id"]].astype({"query_id": str}).drop_duplicates()
    if candidates is not None:
        known = candidates.astype({"query_id": str}).set_index("query_id")["origin"]
        table["origin"] = table["query_id"].map(known)
    else:
        table["origin"] = None
    if origins is not None:
        table = table[table["origin"].isin(list(origins))]
    return table.sort_values("query_id").reset_index(drop=True)


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
    evidence: Evidence | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The SELECTION table of ``population`` (``query_id``, ``origin``), best first.

    Args:
        ratio: the human share of the population (the run's ``query_ratio``).
        seed: the random share's seed, and the tie-break of scored selectors.
        evidence: what the selector reads (:attr:`Selector.evidence`).
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
        score = chosen.score(evidence or Evidence(), ids, threshold)
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
