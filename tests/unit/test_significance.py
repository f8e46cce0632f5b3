"""Paired t-tests against a baseline: alignment, markers and degenerate cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from utilann import schemas
from utilann.significance import paired_ttest, paired_ttests


def long_table(values: dict[str, list[float]], measure: str = "nDCG@10", qids=None) -> pd.DataFrame:
    rows = []
    for run, vals in values.items():
        for i, value in enumerate(vals):
            qid = qids[i] if qids else f"q{i}"
            rows.append((run, "nq", "test", measure, qid, value))
    return pd.DataFrame(rows, columns=["run", "dataset", "split", "measure", "query_id", "value"])


def test_matches_scipy_and_marks_better_and_worse_runs():
    base = [0.1, 0.4, 0.3, 0.5, 0.2, 0.6]
    better = [0.5, 0.8, 0.6, 0.9, 0.5, 0.9]
    worse = [0.0, 0.1, 0.1, 0.2, 0.0, 0.2]
    same = [0.2, 0.3, 0.3, 0.5, 0.1, 0.7]
    out = paired_ttests(
        long_table({"human": base, "utilsel": better, "replug": worse, "utilrank": same}), "human"
    )
    assert list(out.columns) == schemas.SIGNIFICANCE.names
    rows = out.set_index("run")
    expected = stats.ttest_rel(better, base)
    assert rows.loc["utilsel", "t"] == pytest.approx(expected.statistic)
    assert rows.loc["utilsel", "p_value"] == pytest.approx(expected.pvalue)
    assert rows.loc["utilsel", "mean"] == pytest.approx(np.mean(better))
    assert rows.loc["utilsel", "baseline_mean"] == pytest.approx(np.mean(base))
    assert rows.loc["utilsel", "delta"] == pytest.approx(np.mean(better) - np.mean(base))
    assert rows.loc["utilsel", "marker"] == "+" and rows.loc["utilsel", "significant"]
    assert rows.loc["replug", "marker"] == "-"
    assert rows.loc["utilrank", "marker"] == "" and not rows.loc["utilrank", "significant"]
    assert set(out["baseline"]) == {"human"} and "human" not in set(out["run"])
    assert (out["n_queries"] == 6).all()


def test_missing_queries_count_as_zero():
    table = pd.concat(
        [
            long_table({"human": [1.0, 1.0, 1.0]}, qids=["a", "b", "c"]),
            long_table({"dense": [1.0, 0.5]}, qids=["a", "b"]),  # nothing retrieved for "c"
        ]
    )
    row = paired_ttests(table, "human").iloc[0]
    assert row["n_queries"] == 3
    assert row["mean"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    common = paired_ttests(table, "human", fill_value=None).iloc[0]
    assert common["n_queries"] == 2 and common["mean"] == pytest.approx(0.75)


def test_queries_of_other_runs_do_not_enter_a_pair():
    table = pd.concat(
        [
            long_table({"human": [1.0, 0.0], "a": [1.0, 0.0]}, qids=["q1", "q2"]),
            long_table({"b": [1.0]}, qids=["q3"]),
        ]
    )
    rows = paired_ttests(table, "human").set_index("run")
    assert rows.loc["a", "n_queries"] == 2
    assert rows.loc["b", "n_queries"] == 3


def test_zero_variance_differences_give_no_nan():
    identical = paired_ttests(
        long_table({"human": [0.1, 0.5, 0.9], "copy": [0.1, 0.5, 0.9]}), "human"
    ).iloc[0]
    assert (identical["t"], identical["p_value"], identical["marker"]) == (0.0, 1.0, "")
    shifted = paired_ttests(
        long_table({"human": [0.1, 0.5, 0.9], "up": [0.2, 0.6, 1.0]}), "human"
    ).iloc[0]
    assert shifted["t"] == np.inf and shifted["p_value"] == 0.0 and shifted["marker"] == "+"
    assert paired_ttest(np.array([1.0]), np.array([0.0])) == (0.0, 1.0)
    out = paired_ttests(long_table({"human": [0.1, 0.5], "copy": [0.1, 0.5]}), "human")
    assert not out[["t", "p_value", "mean", "delta"]].isna().any().any()


def test_groups_by_dataset_split_and_measure_and_custom_markers():
    table = pd.concat(
        [
            long_table(
                {"human": [0.1, 0.2, 0.3, 0.2], "replug": [0.9, 0.8, 0.9, 0.7]}, measure="EM"
            ),
            long_table(
                {"human": [0.1, 0.2, 0.3, 0.2], "replug": [0.1, 0.2, 0.3, 0.2]}, measure="F1"
            ),
        ]
    )
    out = paired_ttests(table, "human", markers=("†", "‡"))
    assert dict(zip(out["measure"], out["marker"])) == {"EM": "†", "F1": ""}


def test_alpha_controls_significance():
    table = long_table({"human": [0.1, 0.4, 0.3, 0.5, 0.2], "run": [0.2, 0.45, 0.5, 0.5, 0.3]})
    p = paired_ttests(table, "human").iloc[0]["p_value"]
    assert paired_ttests(table, "human", alpha=p * 1.01).iloc[0]["significant"]
    assert not paired_ttests(table, "human", alpha=p * 0.99).iloc[0]["significant"]


def test_input_errors():
    table = long_table({"human": [0.1, 0.2], "run": [0.3, 0.4]})
    with pytest.raises(ValueError, match="baseline run 'bm25'"):
        paired_ttests(table, "bm25")
    with pytest.raises(ValueError, match="repeated"):
        paired_ttests(pd.concat([table, table]), "human")
    with pytest.raises(ValueError, match="lacks column"):
        paired_ttests(table.drop(columns=["split"]), "human")
    with pytest.raises(ValueError, match="alpha"):
        paired_ttests(table, "human", alpha=1.5)
