"""Which corpus passages the generator writes questions for: a seeded, length-filtered sample.

Very short passages (titles, stubs) give vague questions and very long ones are cut in the
prompt, so only passages whose ``title text`` has between ``min_words`` and ``max_words``
whitespace tokens are eligible. The sample depends only on the sorted eligible ids and the
seed (not on corpus order or sharding), and the shards are contiguous slices of it.
"""

from __future__ import annotations

import logging

import pandas as pd

from utilann.passages import format_passage
from utilann.pools import sample_queries

log = logging.getLogger(__name__)


def passage_words(corpus: pd.DataFrame) -> pd.Series:
    """Whitespace tokens of each passage as the prompts show it (``title text``)."""
    return pd.Series(
        [len(format_passage(t, x).split()) for t, x in zip(corpus["title"], corpus["text"])],
        index=corpus.index,
    )


def sample_passages(
    corpus: pd.DataFrame, count: int, min_words: int, max_words: int, seed: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """A seeded sample of ``count`` eligible passages (CORPUS rows, sorted by id) and counts.

    Fewer than ``count`` eligible passages: all of them, with a warning.
    """
    if min_words > max_words:
        raise ValueError(f"min_words {min_words} is above max_words {max_words}")
    words = passage_words(corpus)
    eligible = corpus[(words >= min_words) & (words <= max_words)]
    if len(eligible) < count:
        log.warning(
            "only %d of %d passages have %d-%d words: sampling all of them, not %d",
            len(eligible),
            len(corpus),
            min_words,
            max_words,
            count,
        )
    # the same seeded "sorted ids, then a sample" rule as the pools' query cap
    ids = set(sample_queries(eligible["doc_id"].astype(str).tolist(), count, seed))
    sample = eligible[eligible["doc_id"].astype(str).isin(ids)].sort_values("doc_id")
    counts = {"corpus": len(corpus), "eligible": len(eligible), "sampled": len(sample)}
    return sample.reset_index(drop=True)[["doc_id", "title", "text"]], counts


def contiguous_shards(rows: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """``rows`` in ``n_shards`` consecutive slices whose sizes differ by at most one."""
    bounds = [round(i * len(rows) / n_shards) for i in range(n_shards + 1)]
    return [rows.iloc[bounds[i] : bounds[i + 1]].reset_index(drop=True) for i in range(n_shards)]
