"""REPLUG's labels: scoring requests, the score table, U = softmax(score / T), training sets."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from utilann import schemas
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import PROMPT_TOO_LONG, SCORE_SAMPLING, SCORED, Generation
from utilann.llm.templates import load_template_id
from utilann.replug import (
    gold_answer,
    read_gold_answers,
    score_requests,
    score_table,
    utility_distribution,
)
from utilann.train.data import build_trainset, load_training_queries
from utilann.train.settings import TrainsetSettings

TEMPLATE = load_template_id("short_answer.v1")


def pools() -> pd.DataFrame:
    rows = []
    for qid, docs in {"q1": ["d1", "d2", "d3"], "q2": ["e1", "e2"]}.items():
        for pos, doc in enumerate(docs):
            rows.append(
                {
                    "query_id": qid,
                    "query": f"question {qid}?",
                    "position": pos,
                    "doc_id": doc,
                    "title": f"T{doc}",
                    "text": f"text of {doc}",
                    "is_human_positive": pos == 0,
                    "source": "human" if pos == 0 else "bm25",
                    "source_rank": pos,
                }
            )
    return pd.DataFrame(rows)


def test_gold_answer_is_the_first_non_empty_one():
    assert gold_answer(["", "  Paris ", "Lutetia"]) == "Paris"
    assert gold_answer([]) is None and gold_answer([" "]) is None


def test_one_scoring_request_per_pool_passage_of_answered_queries():
    requests, about = score_requests(pools(), {"q1": "Paris"}, TEMPLATE)
    assert [(a.query_id, a.doc_id, a.position) for a in about] == [
        ("q1", "d1", 0),
        ("q1", "d2", 1),
        ("q1", "d3", 2),
    ]
    for request, a in zip(requests, about, strict=True):
        assert request.mode == "score" and request.sampling == SCORE_SAMPLING
        assert request.template == TEMPLATE.fingerprint
        assert request.messages[-1] == {"role": "assistant", "content": "Paris"}
        # the RAG prompt over this one passage, title and text, then the question
        prompt = request.messages[-2]["content"]
        assert f"T{a.doc_id} text of {a.doc_id}" in prompt and "question q1?" in prompt
        assert request.messages[:-1] == TEMPLATE.render(
            "question q1?", [f"T{a.doc_id} text of {a.doc_id}"]
        )


class FixedScores:
    """Scores each passage's prompt with log-probabilities set per doc id (two tokens)."""

    LOGPROBS = {"d1": [-0.5, -0.5], "d2": [-1.0, -2.0], "d3": [-2.0, -2.0]}

    def score(self, conversations, sampling):
        out = []
        for c in conversations:
            doc = next(d for d in self.LOGPROBS if f"of {d}" in c[-2]["content"])
            if doc == "d3" and "LONG" in c[-1]["content"]:
                out.append(Generation("", 99_999, 0, PROMPT_TOO_LONG))
            else:
                out.append(Generation(json.dumps(self.LOGPROBS[doc]), 50, 1, SCORED))
        return out


def test_score_table_sums_the_answer_token_logprobs(tmp_path):
    identity = ModelIdentity("m", "sha256:0", "0.32.0", "bfloat16")
    with GenerationCache(tmp_path, "w") as cache:
        llm = CachedGenerator(cache, identity, FixedScores, chunk_size=4)
        requests, about = score_requests(pools(), {"q1": "Paris"}, TEMPLATE)
        table, too_long = score_table(about, llm, requests)
    assert list(table.columns) == schemas.REPLUG_SCORES.names and too_long == 0
    assert table["logprob"].tolist() == [-1.0, -3.0, -4.0]
    assert table["answer_tokens"].tolist() == [2, 2, 2]
    assert table["cache_key"].str.fullmatch(r"[0-9a-f]{64}").all()
    with GenerationCache(tmp_path, "w2") as cache:
        llm = CachedGenerator(cache, identity, FixedScores, chunk_size=4)
        requests, about = score_requests(pools(), {"q1": "LONG"}, TEMPLATE)
        table, too_long = score_table(about, llm, requests)
    assert too_long == 1 and table["doc_id"].tolist() == ["d1", "d2"]


SCORES = pd.DataFrame(
    {
        "query_id": ["q1", "q1", "q1"],
        "doc_id": ["d1", "d2", "d3"],
        "position": [0, 1, 2],
        "answer": ["Paris"] * 3,
        "answer_tokens": [2, 2, 2],
        "logprob": [-1.0, -3.0, -4.0],
        "cache_key": ["k"] * 3,
    }
)


def test_utility_is_the_softmax_of_the_log_likelihood_over_the_pool():
    u = utility_distribution(SCORES, temperature=1.0, score="sum")["utility"]
    z = math.exp(-1) + math.exp(-3) + math.exp(-4)
    assert u.tolist() == pytest.approx([math.exp(-1) / z, math.exp(-3) / z, math.exp(-4) / z])
    # temperature 2 = the square root of the likelihoods; mean per token = sum / 2 here
    z2 = math.exp(-0.5) + math.exp(-1.5) + math.exp(-2)
    expected = [math.exp(-0.5) / z2, math.exp(-1.5) / z2, math.exp(-2) / z2]
    assert utility_distribution(SCORES, 2.0, "sum")["utility"].tolist() == pytest.approx(expected)
    assert utility_distribution(SCORES, 1.0, "mean")["utility"].tolist() == pytest.approx(expected)
    # far below exp's range: still a distribution (the softmax is shifted per query)
    tiny = SCORES.assign(logprob=SCORES["logprob"] * 1000)
    assert utility_distribution(tiny, 1.0, "sum")["utility"].tolist() == pytest.approx([1, 0, 0])
    with pytest.raises(ValueError, match="sum"):
        utility_distribution(SCORES, 1.0, "max")


def test_replug_training_set_carries_u_and_its_top_passage_is_the_positive():
    settings = TrainsetSettings("replug", empty_policy="keep")
    rows, stats = build_trainset(pools(), None, settings, SCORES)
    q1 = rows[rows["query_id"] == "q1"]
    assert q1["utility"].sum() == pytest.approx(1.0)
    assert q1.loc[q1["positive"], "doc_id"].tolist() == ["d1"]
    q2 = rows[rows["query_id"] == "q2"]  # no gold answer: no score, no positive
    assert q2["utility"].isna().all() and not q2["positive"].any()
    assert stats["replug_scored_queries"] == 1 and stats["queries_without_positive"] == 1
    queries, _ = load_training_queries(rows)
    assert queries[0].utility == pytest.approx(dict(zip(q1["doc_id"], q1["utility"])))
    assert queries[1].utility == {}
    # the default `drop` trains only on the answered queries
    rows, _ = build_trainset(pools(), None, TrainsetSettings("replug"), SCORES)
    assert set(rows["query_id"]) == {"q1"}


def test_other_label_sources_have_no_utility():
    rows, _ = build_trainset(pools(), None, TrainsetSettings("human"))
    assert rows["utility"].isna().all()


def test_replug_needs_its_scores_and_scores_of_these_pools():
    with pytest.raises(ValueError, match="REPLUG answer likelihoods"):
        build_trainset(pools(), None, TrainsetSettings("replug"))
    other = SCORES.assign(doc_id=["x1", "x2", "x3"])
    with pytest.raises(ValueError, match="outside the pools"):
        build_trainset(pools(), None, TrainsetSettings("replug"), other)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replug_temperature": 0.0},
        {"replug_score": "max"},
        {"human_positive": "inclusion"},
        {"union_ratio": 0.2},
    ],
)
def test_bad_replug_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainsetSettings("replug", **kwargs)


def test_missing_answer_file_says_where_it_goes(tmp_path):
    with pytest.raises(FileNotFoundError, match="replug.answers"):
        read_gold_answers(tmp_path / "train_v2.1.json", "msmarco", tmp_path / "q.parquet")
