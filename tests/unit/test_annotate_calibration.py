"""Calibration figures (kappa, Jaccard of display orders, position bias), graded calibration
pools and the gate, on small tables with hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from utilann.annotate.agreement import cohen_kappa, jaccard, mean_order_jaccard, position_rates
from utilann.annotate.calibration import (
    CalibrationGateError,
    calibration_report,
    check_gate,
    gate_checks,
    graded_set,
    render_markdown,
    training_set,
)
from utilann.schemas import CALIBRATION_LABELS, CALIBRATION_RAW, CALIBRATION_REPORT, POOLS

T, F = True, False


def test_kappa_hand_computed():
    # p_o = 4/6, both raters say yes half the time: p_e = 1/2 -> (2/3 - 1/2) / (1/2) = 1/3
    assert cohen_kappa([T, T, F, F, T, F], [T, F, F, F, T, T]) == pytest.approx(1 / 3)
    # p_o = 1/2, marginals 3/4 and 1/4: p_e = 3/8 -> (1/2 - 3/8) / (5/8) = 0.2
    assert cohen_kappa([T, T, T, F], [T, F, F, F]) == pytest.approx(0.2)
    assert cohen_kappa([T, F], [T, F]) == pytest.approx(1.0)
    assert cohen_kappa([T, F], [F, T]) == pytest.approx(-1.0)


def test_kappa_agrees_with_scikit_learn():
    import random

    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 40)
        a = [rng.random() < 0.3 for _ in range(n)]
        b = [rng.random() < 0.6 for _ in range(n)]
        if len(set(a) | set(b)) > 1:
            assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_of_a_judge_that_selects_nothing():
    # p_o = p_e = 2/3 -> 0: no agreement beyond chance
    assert cohen_kappa([F, F, F], [T, F, F]) == pytest.approx(0.0)
    assert math.isnan(cohen_kappa([F, F], [F, F]))  # one label everywhere: 0/0
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="paired"):
        cohen_kappa([T], [T, F])


def test_jaccard_of_display_orders():
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0
    # q1: {a,b} vs {b,c} = 1/3; q2: {c} vs nothing = 0 -> 1/6
    two = {0: {"q1": {"a", "b"}, "q2": {"c"}}, 1: {"q1": {"b", "c"}}}
    assert mean_order_jaccard(two) == pytest.approx(1 / 6)
    # three orders: pairs (0,1) 1/3, (0,2) 1, (1,2) 1/3 -> 5/9
    three = {0: {"q": {"a", "b"}}, 1: {"q": {"b", "c"}}, 2: {"q": {"a", "b"}}}
    assert mean_order_jaccard(three) == pytest.approx(5 / 9)
    assert math.isnan(mean_order_jaccard({0: {"q": {"a"}}}))


def _raw(step, doc_ids, picked, status="ok", prompt=100, output=10, **extra):
    return {
        "query_id": "q",
        "step": step,
        "window": 0,
        "doc_ids": doc_ids,
        "cache_key": "k",
        "text": "",
        "prompt_tokens": prompt,
        "output_tokens": output,
        "finish_reason": "stop",
        "gen_seconds": 1.0,
        "from_cache": False,
        "parse_status": status,
        "parse_issues": [],
        "parsed_doc_ids": picked,
        "answer": None,
        **extra,
    }


def test_position_rates_selection_and_ranking():
    raw = pd.DataFrame(
        [
            _raw("relsel", ["a", "b", "c"], ["a"]),
            _raw("relsel", ["d", "e", "f"], ["e", "f"]),
            _raw("answer", ["a"], []),
            _raw("utilrank", ["a", "b"], ["b", "a"]),  # ranked first: position 2
        ]
    )
    rates = position_rates(raw)
    relsel = rates[rates["step"] == "relsel"]
    assert relsel["shown"].tolist() == [2, 2, 2] and relsel["chosen"].tolist() == [1, 1, 1]
    ranking = rates[rates["step"] == "utilrank"]
    assert ranking["chosen"].tolist() == [0, 1] and ranking["rate"].tolist() == [0.0, 1.0]
    assert "answer" not in set(rates["step"])


def _labels():
    """One query, 4 passages (d1 the human positive), two display orders.

    RelSel: order 0 selects d1, d2; order 1 d1, d3. UtilSel: order 0 d1; order 1 failed.
    """
    chosen = {("relsel", 0): {"d1", "d2"}, ("relsel", 1): {"d1", "d3"}, ("utilsel", 0): {"d1"}}
    rows = []
    for seed in (0, 1):
        for strategy in ("relsel", "utilsel"):
            for pos, doc in enumerate(["d1", "d2", "d3", "d4"]):
                rows.append(
                    {
                        "set": "s",
                        "order_seed": seed,
                        "query_id": "q",
                        "doc_id": doc,
                        "position": pos,
                        "is_human_positive": doc == "d1",
                        "strategy": strategy,
                        "selected": doc in chosen.get((strategy, seed), set()),
                        "rank": None,
                        "list_length": 4 if strategy == "relsel" else 2,
                    }
                )
    labels = pd.DataFrame(rows, columns=CALIBRATION_LABELS.names)
    labels["rank"] = labels["rank"].astype("Int32")
    raw = pd.DataFrame(
        [
            _raw("relsel", ["d2", "d1", "d3", "d4"], ["d1", "d2"], set="s", order_seed=0),
            _raw(
                "relsel",
                ["d1", "d4", "d3", "d2"],
                ["d1", "d3"],
                "repaired",
                120,
                20,
                set="s",
                order_seed=1,
            ),
            _raw("utilsel", ["d2", "d1"], ["d1"], set="s", order_seed=0),
            _raw("utilsel", ["d1", "d3"], [], "failed", set="s", order_seed=1),
        ]
    )
    return labels, raw[CALIBRATION_RAW.names]


def test_calibration_report_hand_computed():
    report, positions, steps = calibration_report(*_labels(), threshold=10)
    assert list(report.columns) == CALIBRATION_REPORT.names
    r = report.set_index("name")
    # RelSel: positives (o0,d1) (o0,d2) (o1,d1) (o1,d3); human positive d1 in both orders
    assert r.loc["relsel", "precision"] == pytest.approx(0.5)
    assert r.loc["relsel", "recall"] == pytest.approx(1.0)
    # 8 items: p_o = 6/8, marginals 4/8 and 2/8: p_e = 1/2 -> 0.5
    assert r.loc["relsel", "kappa"] == pytest.approx(0.5)
    assert r.loc["relsel", "order_jaccard"] == pytest.approx(1 / 3)
    # position 1 shows d2 (order 0) and d1 (order 1): both selected
    assert r.loc["relsel", "first_position_rate"] == pytest.approx(1.0)
    assert r.loc["relsel", "other_position_rate"] == pytest.approx(2 / 6)
    assert r.loc["relsel", "parse_rate"] == 1.0 and r.loc["relsel", "repaired_parses"] == 1
    assert r.loc["relsel", "prompt_tokens_per_call"] == pytest.approx(110)
    assert r.loc["relsel", "output_tokens_per_call"] == pytest.approx(15)
    assert (r.loc["relsel", "queries"], r.loc["relsel", "orders"]) == (1, 2)
    # UtilSel: only (o0,d1): precision 1, recall 1/2; p_o = 7/8, p_e = 44/64 -> 0.6
    assert r.loc["utilsel", "precision"] == pytest.approx(1.0)
    assert r.loc["utilsel", "recall"] == pytest.approx(0.5)
    assert r.loc["utilsel", "kappa"] == pytest.approx(0.6)
    assert r.loc["utilsel", "order_jaccard"] == pytest.approx(0.0)
    assert r.loc["utilsel", "parse_rate"] == pytest.approx(0.5)
    assert r.loc["utilsel", "first_position_rate"] == 0.0
    assert r.loc["utilsel", "other_position_rate"] == pytest.approx(0.5)
    assert set(positions["set"]) == {"s"} and positions["shown"].sum() == 12
    assert steps.set_index("step").loc["relsel", "prompt_tokens_per_call"] == 110
    md = render_markdown(report, positions, steps, {"model": "m"})
    assert md.startswith("# Annotation calibration report") and "| s | relsel |" in md
    assert "@4" in md  # the selection rate at display position 4


def test_gate_lists_every_figure_and_fails_below_a_bar():
    report, _, _ = calibration_report(*_labels(), threshold=10)
    checks = gate_checks(report, {"min_kappa": 0.55, "min_recall": None})
    assert [(c["name"], c["passed"]) for c in checks] == [("relsel", False), ("utilsel", True)]
    with pytest.raises(CalibrationGateError) as err:
        check_gate(report, {"min_kappa": 0.55, "min_parse_rate": 0.4}, "report.md")
    message = str(err.value)
    assert "below 1 of 4 calibration bars" in message
    assert "FAIL s relsel: kappa 0.500 < min_kappa 0.55" in message
    assert "ok   s utilsel: parse_rate 0.500 >= min_parse_rate 0.4" in message
    assert "report.md" in message
    assert len(check_gate(report, {"min_kappa": 0.5}, "r")) == 2  # at the bar passes
    assert check_gate(report, {"min_kappa": None}, "r") == []
    with pytest.raises(ValueError, match="unknown calibration gate keys"):
        gate_checks(report, {"min_kapa": 0.5})


def test_gate_fails_an_undefined_figure():
    report, _, _ = calibration_report(*_labels(), threshold=10)
    report.loc[report["name"] == "utilsel", "kappa"] = math.nan
    with pytest.raises(CalibrationGateError, match="kappa undefined < min_kappa 0"):
        check_gate(report, {"min_kappa": 0.0}, "r")


def test_graded_set_binarises_judged_passages():
    corpus = pd.DataFrame(
        {"doc_id": ["d1", "d2", "d3", "d4"], "title": "", "text": ["t1", "t2", "t3", "t4"]}
    )
    queries = pd.DataFrame({"query_id": ["1", "2"], "text": ["one", "two"]})
    qrels = pd.DataFrame(
        {
            "query_id": ["1", "1", "1", "1", "2"],
            "doc_id": ["d1", "d2", "d3", "d9", "d4"],  # d9 is not in the corpus
            "relevance": [3, 1, 2, 3, 1],
            "split": "test",
        }
    )
    pools = graded_set(queries, qrels, corpus, 2, 16, None, 0)
    assert list(pools.columns) == POOLS.names
    assert set(pools["query_id"]) == {"1"}  # query 2 has no passage of grade >= 2
    assert pools["doc_id"].tolist() == ["d1", "d2", "d3"]
    assert pools["is_human_positive"].tolist() == [True, False, True]
    assert pools["source_rank"].tolist() == [3, 1, 2] and set(pools["source"]) == {"qrels"}
    small = graded_set(queries, qrels, corpus, 2, 2, None, 0)
    assert len(small) == 2 and set(small["doc_id"]) <= {"d1", "d2", "d3"}
    assert small.equals(graded_set(queries, qrels, corpus, 2, 2, None, 0))  # seeded
    with pytest.raises(ValueError, match="grade >= 4"):
        graded_set(queries, qrels, corpus, 4, 16, None, 0)


def test_training_set_samples_whole_queries():
    pools = pd.DataFrame({"query_id": ["a", "a", "b", "c", "c"], "doc_id": list("vwxyz")})
    sample = training_set(pools, 2, 0)
    assert sample["query_id"].nunique() == 2
    for qid in sample["query_id"].unique():  # every passage of a chosen query
        assert (sample["query_id"] == qid).sum() == (pools["query_id"] == qid).sum()
    assert training_set(pools, None, 0).equals(pools)
