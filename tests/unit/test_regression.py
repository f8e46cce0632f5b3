"""Comparing results with a reference run: tables matched on keys, numbers with a tolerance."""

import pandas as pd
import pytest

from utilann.io import write_table
from utilann.regression import compare_results, compare_tables
from utilann.schemas import LABELS

METRICS = pd.DataFrame(
    {
        "run": ["bm25", "bm25", "human"],
        "dataset": ["scifact"] * 3,
        "split": ["test"] * 3,
        "measure": ["nDCG@10", "R@100", "nDCG@10"],
        "value": [0.665, 0.908, 0.5123456],
    }
)
KEYS = ["run", "dataset", "split", "measure"]


def labels(selected=(True, False), rank=(1, None)):
    frame = pd.DataFrame(
        {
            "query_id": ["q", "q"],
            "doc_id": ["a", "b"],
            "position": [0, 1],
            "is_human_positive": [True, False],
            "strategy": ["utilrank", "utilrank"],
            "selected": list(selected),
            "rank": pd.array(list(rank), dtype="Int32"),
            "list_length": [1, 1],
        }
    )
    return frame


def test_equal_tables_in_another_row_order_are_equal():
    assert compare_tables(METRICS, METRICS.iloc[::-1], KEYS) == []
    assert compare_tables(labels(), labels().iloc[::-1], ["query_id", "doc_id", "strategy"]) == []


def test_numbers_within_the_tolerance_are_equal():
    close = METRICS.assign(value=METRICS["value"] + 5e-7)
    assert compare_tables(METRICS, close, KEYS, atol=1e-6) == []
    far = METRICS.assign(value=METRICS["value"] + [0, 0, 1e-3])
    (problem,) = compare_tables(METRICS, far, KEYS, atol=1e-6)
    assert problem.startswith("value: 1 of 3 rows differ") and "human" in problem


def test_flags_ranks_missing_and_extra_rows_are_reported():
    keys = ["query_id", "doc_id", "strategy"]
    assert compare_tables(labels(), labels(selected=(True, True), rank=(1, 2)), keys) == [
        "selected: 1 of 2 rows differ (('q', 'b', 'utilrank'): False -> True)",
        "rank: 1 of 2 rows differ (('q', 'b', 'utilrank'): <NA> -> 2)",
    ]
    problems = compare_tables(METRICS.iloc[:2], METRICS.iloc[1:], KEYS)
    assert problems[0].startswith("1 rows missing") and problems[1].startswith("1 rows not in")
    assert compare_tables(METRICS, METRICS.drop(columns="value"), KEYS)[0].startswith("columns")


def test_compare_results_walks_the_artifacts(tmp_path):
    ref, new = tmp_path / "ref", tmp_path / "new"
    for root in (ref, new):
        write_table(METRICS, root / "metrics.parquet")
        write_table(labels(), root / "annotation" / "labels.parquet", LABELS)
    write_table(labels(), ref / "annotation" / "shard-0" / "labels.parquet", LABELS)
    assert [str(d) for d in compare_results(ref, new)] == [
        "annotation/shard-0/labels.parquet: missing from the results"
    ]
    write_table(labels(), new / "annotation" / "shard-0" / "labels.parquet", LABELS)
    assert compare_results(ref, new) == []
    with pytest.raises(FileNotFoundError, match="holds none"):
        compare_results(tmp_path / "nowhere", new)


def test_cli_compare_exit_status(tmp_path, capsys):
    from utilann.cli import main

    ref, new = tmp_path / "ref", tmp_path / "new"
    write_table(METRICS, ref / "metrics.parquet")
    write_table(METRICS, new / "metrics.parquet")
    assert main(["compare", str(ref), str(new)]) == 0
    write_table(METRICS.assign(value=0.0), new / "metrics.parquet")
    assert main(["--width", "200", "compare", str(ref), str(new)]) == 1
    assert "metrics.parquet: value: 3 of 3 rows differ" in capsys.readouterr().out
