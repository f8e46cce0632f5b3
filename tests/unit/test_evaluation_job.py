"""One evaluation job, several (run, target) items: files, values by hand, subsets, errors."""

from __future__ import annotations

import pandas as pd
import pytest

from utilann import schemas
from utilann.evaluation_job import EvaluationError, run_evaluations
from utilann.io import read_metadata, read_table, write_table

# Two forums of a benchmark, each with its own queries and one run of them.
QRELS = {
    "forum-a": [("q1", "a", 1), ("q2", "c", 1)],
    "forum-b": [("q1", "x", 1)],
}
RUNS = {
    "forum-a": [("q1", "b", 1, 2.0), ("q1", "a", 2, 1.0), ("q2", "c", 1, 3.0)],
    "forum-b": [("q1", "y", 1, 2.0), ("q1", "z", 2, 1.5), ("q1", "w", 3, 1.2), ("q1", "x", 4, 1.0)],
}


def write_inputs(tmp_path):
    for name in QRELS:
        qrels = pd.DataFrame(QRELS[name], columns=["query_id", "doc_id", "relevance"])
        write_table(qrels.assign(split="test"), tmp_path / f"{name}.qrels.parquet", schemas.QRELS)
        run = pd.DataFrame(RUNS[name], columns=["query_id", "doc_id", "rank", "score"])
        write_table(run, tmp_path / f"{name}.run.parquet", schemas.RUN)


def item(tmp_path, dataset, **extra):
    base = tmp_path / "eval" / f"{dataset}.test"
    return {
        "run": "r",
        "dataset": dataset,
        "split": "test",
        "perquery": str(base) + ".perquery.parquet",
        "metrics": str(base) + ".metrics.parquet",
        **extra,
    }


def scored(tmp_path, dataset):
    return item(
        tmp_path,
        dataset,
        run_file=str(tmp_path / f"{dataset}.run.parquet"),
        qrels=str(tmp_path / f"{dataset}.qrels.parquet"),
        measures=["RR@10"],
    )


def figure(path):
    metrics = read_table(path)
    return dict(zip(metrics["measure"], metrics["value"]))


def test_each_target_is_scored_then_the_benchmark_is_the_mean_of_its_subsets(tmp_path):
    write_inputs(tmp_path)
    subsets = {
        name: {k: scored(tmp_path, name)[k] for k in ("perquery", "metrics")} for name in QRELS
    }
    bench = item(tmp_path, "forum", subsets=subsets)
    run_evaluations([scored(tmp_path, "forum-a"), scored(tmp_path, "forum-b"), bench])
    # forum-a: q1 relevant at rank 2 (RR 1/2), q2 at rank 1 (RR 1): mean 0.75
    assert figure(subsets["forum-a"]["metrics"]) == {"RR@10": 0.75}
    assert figure(subsets["forum-b"]["metrics"]) == {"RR@10": 0.25}  # rank 4
    # the benchmark: the unweighted mean of the two forums (not of the three queries)
    assert figure(bench["metrics"]) == {"RR@10": 0.5}
    per_query = read_table(bench["perquery"])
    assert sorted(per_query["query_id"]) == ["forum-a/q1", "forum-a/q2", "forum-b/q1"]
    assert read_metadata(bench["metrics"])["subsets"] == ["forum-a", "forum-b"]
    assert read_metadata(subsets["forum-b"]["perquery"])["measures"] == ["RR@10"]


def test_a_failing_item_names_its_run_and_target_and_writes_nothing(tmp_path):
    write_inputs(tmp_path)
    good, bad = scored(tmp_path, "forum-a"), scored(tmp_path, "forum-b")
    bad["split"] = "dev"  # the qrels have no dev judgements
    with pytest.raises(EvaluationError, match=r"r on forum-b/dev failed: no qrels for split"):
        run_evaluations([good, bad])
    assert figure(good["metrics"]) == {"RR@10": 0.75}  # written before the failure
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "forum-a.test.metrics.parquet",
        "forum-a.test.perquery.parquet",
    ]
