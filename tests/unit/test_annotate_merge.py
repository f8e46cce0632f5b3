"""Merging shard label files: shared metadata, mismatch detection, empty-query counting."""

import pandas as pd
import pytest

from utilann.annotate.merge import empty_queries, read_shards
from utilann.io import write_table
from utilann.schemas import LABELS

META = {
    "model": "m",
    "dtype": "bfloat16",
    "sampling": {"temperature": 0.0},
    "prompts": {"version": "v1"},
    "strategies": ["relsel", "utilrank"],
    "window_size": 16,
    "position_policy": "fixed_first",
    "seed": 0,
    "passage_max_words": 300,
    "code_version": "1",
}


def shard(query, relsel, ranks):
    rows = []
    for i, (sel, rank) in enumerate(zip(relsel, ranks, strict=True)):
        base = {
            "query_id": query,
            "doc_id": f"{query}-{i}",
            "position": i,
            "is_human_positive": i == 0,
        }
        rows.append(
            {
                **base,
                "strategy": "relsel",
                "selected": sel,
                "rank": None,
                "list_length": len(relsel),
            }
        )
        rows.append(
            {
                **base,
                "strategy": "utilrank",
                "selected": rank is not None,
                "rank": rank,
                "list_length": sum(relsel),
            }
        )
    return pd.DataFrame(rows)


def test_read_shards_and_count_empty(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_table(shard("q1", [True, False], [1, None]), a, LABELS, META)
    write_table(shard("q2", [False, False], [None, None]), b, LABELS, META)
    labels, meta = read_shards([a, b])
    assert len(labels) == 8 and meta["model"] == "m"
    assert str(labels["rank"].dtype) == "Int32"
    assert empty_queries(labels, "relsel") == ["q2"]
    assert empty_queries(labels, "utilrank") == ["q2"]


def test_shards_from_different_prompts_are_refused(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_table(shard("q1", [True], [1]), a, LABELS, META)
    write_table(shard("q2", [True], [1]), b, LABELS, {**META, "prompts": {"version": "v2"}})
    with pytest.raises(ValueError, match="prompts"):
        read_shards([a, b])
