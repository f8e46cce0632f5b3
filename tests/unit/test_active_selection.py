"""Active selection by display-order disagreement and by low judge confidence: the selectors,
the confidence table and the scoring requests (real jobs: tests/e2e/test_newcorpus_workflow.py).
"""

import math

import pandas as pd
import pytest
from test_annotate_cascade import IDENTITY, POOLS, ScriptedEngine, settings

from utilann.annotate.cascade import Cascade
from utilann.evidence import confidence_table, score_requests
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache
from utilann.llm.engine import SCORE_SAMPLING
from utilann.selection import SELECTORS, Evidence, Selector, population, select_queries

POP = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "origin": "unlabelled"})


def relsel(rows):
    """LABELS rows of strategy relsel from (query, doc, selected)."""
    return pd.DataFrame(
        {
            "query_id": [q for q, _, _ in rows],
            "doc_id": [d for _, d, _ in rows],
            "position": 0,
            "is_human_positive": False,
            "strategy": "relsel",
            "selected": [s for _, _, s in rows],
            "rank": pd.array([None] * len(rows), dtype="Int32"),
            "list_length": 2,
        }
    )


def test_display_orders_ask_where_the_order_changes_relsel():
    first = relsel(
        [("q1", "a", True), ("q1", "b", False), ("q2", "a", True), ("q2", "b", True)]
        + [("q3", "a", True), ("q3", "b", False), ("q4", "a", False), ("q4", "b", False)]
    )
    second = relsel(
        [("q1", "a", True), ("q1", "b", False), ("q2", "a", True), ("q2", "b", False)]
        + [("q3", "a", False), ("q3", "b", True), ("q4", "a", False), ("q4", "b", False)]
    )
    table = select_queries(POP, 0.5, 0, "display_orders", Evidence(orders=[first, second]))
    # q1 same pick: 0; q2 {a, b} vs {a}: 1/2; q3 {a} vs {b}: 1; q4 nothing either time: 1
    assert table.set_index("query_id")["score"].to_dict() == {
        "q1": 0.0,
        "q2": 0.5,
        "q3": 1.0,
        "q4": 1.0,
    }
    assert set(table.loc[table["selected"], "query_id"]) == {"q3", "q4"}
    with pytest.raises(ValueError, match="two display-order passes"):
        select_queries(POP, 0.5, 0, "display_orders", Evidence(orders=[first]))


def test_low_confidence_asks_the_least_sure_answers_first():
    confidence = pd.DataFrame(
        {"query_id": ["q1", "q2", "q3", "q4"], "mean_logprob": [-0.1, -2.0, math.nan, -0.5]}
    )
    table = select_queries(POP, 0.75, 3, "low_confidence", Evidence(confidence=confidence))
    scores = table.set_index("query_id")["score"]
    assert scores["q1"] == pytest.approx(0.1) and scores["q2"] == pytest.approx(2.0)
    assert scores["q3"] == math.inf  # no scored answer: asked first
    ranked = table.dropna(subset=["rank"]).sort_values("rank")["query_id"].tolist()
    assert ranked == ["q3", "q2", "q4"]  # 3 of 4 at 75 %
    with pytest.raises(ValueError, match="needs the judge's confidence"):
        select_queries(POP, 0.5, 0, "low_confidence", Evidence())


def test_selectors_declare_what_they_read():
    assert SELECTORS["display_orders"].needs("orders")
    assert not SELECTORS["display_orders"].needs("labels")
    assert SELECTORS["low_confidence"].evidence == ("confidence",)
    assert SELECTORS["relsel_utilsel"].evidence == ("labels",) and not SELECTORS["random"].evidence
    with pytest.raises(ValueError, match="unknown evidence"):
        Selector("x", score=lambda e, q, t: None, evidence=("logits",))
    with pytest.raises(ValueError, match="needs evidence"):
        Selector("y", evidence=("labels",))


def test_confidence_table_sums_tokens_per_query():
    table = confidence_table(
        ["q1", "q2", "q3"],
        "relsel",
        {"q1": 2, "q2": 1},
        [("q1", [-0.1, -0.3]), ("q1", [-0.2]), ("q2", None)],
    )
    rows = table.set_index("query_id")
    assert rows.loc["q1", ["calls", "scored", "answer_tokens"]].tolist() == [2, 2, 3]
    assert rows.loc["q1", "logprob"] == pytest.approx(-0.6)
    assert rows.loc["q1", "mean_logprob"] == pytest.approx(-0.2)
    # a call whose prompt did not fit, and a query without a call: nothing scored
    assert rows.loc["q2", ["calls", "scored", "answer_tokens"]].tolist() == [1, 0, 0]
    assert math.isnan(rows.loc["q2", "mean_logprob"]) and math.isnan(rows.loc["q3", "mean_logprob"])
    assert (table["step"] == "relsel").all()


def test_score_requests_append_each_answer_to_its_own_prompt(tmp_path):
    with GenerationCache(tmp_path / "cache", "t") as cache:
        generator = CachedGenerator(cache, IDENTITY, ScriptedEngine, chunk_size=8)
        result = Cascade(settings(strategies=("relsel",)), generator).run(POOLS)
    requests, owners = score_requests(result.answered, "relsel")
    relsel_calls = [a for a in result.answered if a.call.step.name == "relsel"]
    assert len(requests) == len(relsel_calls) and owners == [a.call.query_id for a in relsel_calls]
    for request, answered in zip(requests, relsel_calls, strict=True):
        assert request.mode == "score" and request.sampling == SCORE_SAMPLING
        assert list(request.messages[:-1]) == list(answered.call.request.messages)
        assert request.messages[-1] == {
            "role": "assistant",
            "content": answered.outcome.generation.text,
        }
        assert request.template == answered.call.request.template
    assert score_requests(result.answered, "utilsel") == ([], [])


def test_population_keeps_the_oracle_origins():
    pools = pd.DataFrame({"query_id": ["u2", "g1", "u1", "u2"]})
    candidates = pd.DataFrame(
        {"query_id": ["g1", "u1", "u2"], "origin": ["generated", "unlabelled", "unlabelled"]}
    )
    table = population(pools, candidates, ["unlabelled"])
    assert table.to_dict("list") == {"query_id": ["u1", "u2"], "origin": ["unlabelled"] * 2}
    everyone = population(pools, None, None)
    assert everyone["query_id"].tolist() == ["g1", "u1", "u2"] and everyone["origin"].isna().all()
