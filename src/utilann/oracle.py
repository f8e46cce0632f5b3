"""The stand-in human: a qrels file answers for the queries chosen for human labelling.

In the new-corpus mode nobody has labelled anything; the curriculum stage 2 needs human labels
for its share of queries. The oracle plays the labeller: for each selected query it returns
the passages the given qrels judge relevant, as a person shown the query would mark them. In
the SciFact demo those qrels are SciFact's training qrels, and this is the only step of the
experiment that reads them (the workflow's rule ``oracle_human_labels``; a test checks it).
A user with real labellers replaces the qrels file with their own judgements of the selected
queries (``human/<run>/selected.parquet`` lists them).

The output is a POOLS table of the selected queries: the oracle's positives first (marked
human positives, ``source`` ``oracle``; a positive outside the BM25 pool is added, which is
what a labeller searching the collection would find) and then the query's pool passages that
the oracle does not judge, in pool order. Training reads it like any pool
(``label_source: human``); a query the oracle has no positive for is counted and left to the
training set's ``empty_policy``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from utilann.schemas import POOLS

SOURCE = "oracle"


def oracle_pools(
    pools: pd.DataFrame,
    qrels: pd.DataFrame,
    corpus: pd.DataFrame,
    selected: Iterable[str],
) -> tuple[pd.DataFrame, dict[str, int]]:
    """POOLS rows of the ``selected`` queries with the oracle's labels, and counts."""
    wanted = sorted(set(map(str, selected)))
    pools = pools.astype({"query_id": str, "doc_id": str})
    qrels = qrels.astype({"query_id": str, "doc_id": str})
    judged = qrels.groupby("query_id")["doc_id"].agg(set).to_dict()
    positives = (
        qrels[qrels["relevance"] > 0]
        .groupby("query_id")["doc_id"]
        .agg(lambda s: sorted(set(s)))
        .to_dict()
    )
    docs = corpus.astype({"doc_id": str}).set_index("doc_id")[["title", "text"]]
    rows: list[dict] = []
    counts = {"queries": len(wanted), "answered": 0, "positives": 0, "added": 0, "outside": 0}
    for qid in wanted:
        pool = pools[pools["query_id"] == qid].sort_values("position")
        if pool.empty:
            raise ValueError(f"selected query {qid!r} has no pool")
        query = str(pool["query"].iloc[0])
        in_pool = dict(zip(pool["doc_id"], pool["source_rank"], strict=True))
        labelled = [d for d in positives.get(qid, []) if d in docs.index]
        counts["outside"] += len(positives.get(qid, [])) - len(labelled)
        counts["answered"] += bool(labelled)
        counts["positives"] += len(labelled)
        counts["added"] += sum(d not in in_pool for d in labelled)
        for doc_id in labelled:
            title, text = docs.loc[doc_id, ["title", "text"]]
            rows.append(_row(qid, query, doc_id, title, text, True, SOURCE, in_pool.get(doc_id, 0)))
        for r in pool.itertuples(index=False):
            if r.doc_id not in judged.get(qid, set()):
                rows.append(
                    _row(qid, query, r.doc_id, r.title, r.text, False, r.source, r.source_rank)
                )
    table = pd.DataFrame(rows, columns=[n for n in POOLS.names if n != "position"])
    table.insert(2, "position", table.groupby("query_id").cumcount().astype("int32"))
    return table[POOLS.names], counts


def _row(qid, query, doc_id, title, text, positive, source, rank) -> dict:
    return {
        "query_id": qid,
        "query": query,
        "doc_id": doc_id,
        "title": title,
        "text": text,
        "is_human_positive": positive,
        "source": source,
        "source_rank": int(rank),
    }
