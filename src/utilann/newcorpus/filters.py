"""Filters of generated queries: small functions, applied in a fixed order, each one counted.

A candidate's ``status`` is ``kept`` or the first filter that removed it, in this order:

``empty``       the completion holds no question (nothing left after cleaning);
``too_short`` / ``too_long``  fewer than ``min_words`` / more than ``max_words`` words;
``self_check``  the optional LLM self-check answered "no" (the passage does not answer it);
``duplicate``   the same question (case, spacing and punctuation aside) as an earlier one;
``round_trip``  BM25 does not rank the source passage in its top ``k`` for the question
                (InPars' and Promptagator's consistency check: a question its own passage
                does not retrieve is vague or about something else);
``heldout``     passed every filter, but held out of training: the seeded share of kept
                questions that forms the evaluation split of a corpus without test queries
                (``newcorpus.heldout``; not a filter, counted like one).

The first three run in the generation job on each candidate alone; duplicates and the round
trip need every shard and the BM25 index, and run when the split is assembled. Counts per
status are the "generated queries" table of the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

KEPT = "kept"
HELDOUT = "heldout"
STATUSES = (
    KEPT,
    "empty",
    "too_short",
    "too_long",
    "self_check",
    "duplicate",
    "round_trip",
    HELDOUT,
)
"""Every status, the filters in the order they apply (then the held-out share)."""

_PREFIX = re.compile(
    r"^\s*(?:\*\*)?\s*(?:generated\s+)?(?:search\s+)?(?:question|query)\s*\d*\s*(?:\*\*)?\s*[:\-]"
    r"\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»"
_WORD = re.compile(r"\w+")
_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)
_NO = re.compile(r"^\W*no\b", re.IGNORECASE)


def clean_query(text: str) -> str:
    """The question in a completion: its first non-empty line, without a ``Question:`` label,
    list markers or surrounding quotes. Small models often add an answer or a second question
    on the next lines; the first line is the one that was asked for."""
    for line in (text or "").splitlines():
        line = _PREFIX.sub("", line.strip())
        line = re.sub(r"^(?:[-*•]|\d+[.)])\s+", "", line).strip().strip(_QUOTES).strip()
        if line:
            return line
    return ""


def word_count(query: str) -> int:
    return len(query.split())


def length_status(query: str, min_words: int, max_words: int) -> str:
    """``empty``, ``too_short``, ``too_long`` or ``kept`` for one cleaned query."""
    n = word_count(query)
    if n == 0:
        return "empty"
    if n < min_words:
        return "too_short"
    if n > max_words:
        return "too_long"
    return KEPT


def read_yes_no(text: str) -> bool | None:
    """The self-check's verdict: True (yes), False (no), None (neither: the query is kept)."""
    if _YES.match(text or ""):
        return True
    if _NO.match(text or ""):
        return False
    return None


def normalise(query: str) -> str:
    """What two questions must share to be duplicates: their words, lower-cased, in order."""
    return " ".join(_WORD.findall(query.lower()))


def duplicate_mask(queries: pd.DataFrame) -> pd.Series:
    """True for each kept query that repeats an earlier one (``query_id`` order decides)."""
    ordered = queries.sort_values("query_id", kind="stable")
    keys = ordered["text"].map(normalise)
    repeated = keys.duplicated(keep="first")
    return repeated.reindex(queries.index)


def round_trip_ranks(run: pd.DataFrame, sources: Mapping[str, str]) -> dict[str, int | None]:
    """Rank of each query's source passage in its BM25 ``run`` (None: not retrieved)."""
    found = run[run["query_id"].map(sources) == run["doc_id"]]
    ranks = dict(zip(found["query_id"].astype(str), found["rank"].astype(int), strict=True))
    return {qid: ranks.get(qid) for qid in sources}


def status_counts(statuses: pd.Series) -> dict[str, int]:
    """Candidates per status, every status listed (0 when none)."""
    counts = statuses.value_counts()
    return {status: int(counts.get(status, 0)) for status in STATUSES}
