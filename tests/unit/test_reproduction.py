from __future__ import annotations

import pandas as pd
import pytest

from utilann.reproduction import annotation_metrics, check

METRICS = pd.DataFrame(
    [("bm25", "scifact", "test", "nDCG@10", 0.6789), ("bm25", "scifact", "test", "R@100", 0.90)],
    columns=["run", "dataset", "split", "measure", "value"],
)


def test_statuses():
    expected = [
        {
            "run": "bm25",
            "dataset": "scifact",
            "split": "test",
            "measure": "nDCG@10",
            "expected": 0.679,
            "tolerance": 0.003,
        },
        {
            "run": "bm25",
            "dataset": "scifact",
            "split": "test",
            "measure": "R@100",
            "expected": 0.925,
            "tolerance": 0.003,
        },
        {
            "run": "bm25",
            "dataset": "scifact",
            "split": "test",
            "measure": "RR@10",
            "expected": 0.6,
            "tolerance": 0.01,
        },
        {
            "run": "human",
            "dataset": "msmarco",
            "split": "dev",
            "measure": "RR@10",
            "expected": 0.386,
            "tolerance": 0.01,
        },
    ]
    table = check(METRICS, expected)
    assert table["status"].tolist() == ["ok", "off", "missing"]  # msmarco entry does not apply
    assert round(table["delta"].iloc[1], 3) == -0.025


def test_an_entry_naming_an_experiment_applies_to_that_experiment_only():
    entry = {
        "run": "bm25",
        "dataset": "scifact",
        "split": "test",
        "measure": "nDCG@10",
        "expected": 0.5,
        "tolerance": 0.01,
        "experiment": "msmarco-paper",
    }
    assert check(METRICS, [entry], "demo").empty
    assert check(METRICS, [entry], "msmarco-paper")["status"].tolist() == ["off"]


def test_table1_entries_match_the_annotation_report_rows():
    report = pd.DataFrame(
        {
            "name": ["relsel", "utilrank@10"],
            "queries": [64, 64],
            "precision": [0.151, 0.70],
            "recall": [0.928, 0.72],
            "avg_positives": [6.2, 1.0],
        }
    )
    rows = annotation_metrics(report, "msmarco-train", "train")
    assert len(rows) == 6 and set(rows["measure"]) == {"precision", "recall", "avg_positives"}
    expected = [
        {"run": "utilrank@10", "dataset": "msmarco-train", "split": "train",
         "measure": "precision", "expected": 0.713, "tolerance": 0.03},
        {"run": "relsel", "dataset": "msmarco-train", "split": "train",
         "measure": "avg_positives", "expected": 6.2, "tolerance": 0.5},
    ]  # fmt: skip
    table = check(rows, expected)
    assert table["status"].tolist() == ["ok", "ok"]
    assert table["delta"].tolist() == pytest.approx([-0.013, 0.0])
