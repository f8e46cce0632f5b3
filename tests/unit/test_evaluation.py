"""The evaluation core against ir_measures' own figures and hand-computed values."""

from __future__ import annotations

import math

import ir_measures
import pandas as pd
import pytest

from utilann.evaluation import aggregate, evaluate_run

QRELS = pd.DataFrame(
    [("q1", "a", 1), ("q1", "b", 0), ("q2", "c", 2), ("q2", "d", 1), ("q3", "e", 1)],
    columns=["query_id", "doc_id", "relevance"],
)
RUN = pd.DataFrame(
    [
        ("q1", "b", 1, 3.0),
        ("q1", "a", 2, 2.0),
        ("q2", "d", 1, 5.0),
        ("q2", "x", 2, 4.0),
        ("q2", "c", 3, 1.0),
    ],
    columns=["query_id", "doc_id", "rank", "score"],
)


def test_reciprocal_rank_by_hand_and_missing_query_is_zero():
    per_query = evaluate_run(RUN, QRELS, ["RR@10"])
    values = dict(zip(per_query["query_id"], per_query["value"]))
    assert values == {"q1": 0.5, "q2": 1.0, "q3": 0.0}  # q3 retrieved nothing: counted as 0
    assert aggregate(per_query, "r", "d", "s")["value"].item() == pytest.approx(0.5)


def test_ndcg_matches_ir_measures_on_retrieved_queries():
    per_query = evaluate_run(RUN, QRELS, ["nDCG@10", "R@100"])
    expected = {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.iter_calc(
            [ir_measures.nDCG @ 10, ir_measures.R @ 100],
            QRELS,
            RUN[["query_id", "doc_id", "score"]],
        )
    }
    for row in per_query.itertuples():
        assert row.value == pytest.approx(expected.get((row.query_id, row.measure), 0.0))
    # q2 by hand, trec_eval's linear gains: grades [1, 0, 2] at ranks 1..3, ideal [2, 1]
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    q2 = per_query.query("query_id == 'q2' and measure == 'nDCG@10'")["value"].item()
    assert q2 == pytest.approx(dcg / idcg)


def test_unknown_measure_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown evaluation measure 'nDCG@ten'"):
        evaluate_run(RUN, QRELS, ["nDCG@ten"])


def test_graded_measure_on_binary_qrels_warns():
    from utilann.evaluation import max_grade_warning

    binary = QRELS.assign(relevance=QRELS["relevance"].clip(upper=1))
    assert "every value is 0" in max_grade_warning(binary, ["RR@10", "R(rel=2)@1000"])
    assert max_grade_warning(QRELS, ["R(rel=2)@1000"]) is None  # q2/c is graded 2
    assert max_grade_warning(binary, ["RR@10", "Acc@20"]) is None
