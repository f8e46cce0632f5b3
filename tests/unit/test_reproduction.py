from __future__ import annotations

import pandas as pd

from utilann.reproduction import check

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
