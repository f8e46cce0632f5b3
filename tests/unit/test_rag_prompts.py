"""RAG prompt building, and answering through the shared cached loop with a stub LLM."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from utilann import schemas
from utilann.io import write_table
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import Generation
from utilann.llm.templates import load_template_id
from utilann.rag.job import clean_prediction, generate_answers
from utilann.rag.prompts import build_requests, load_passages, top_k

CORPUS = pd.DataFrame(
    {
        "doc_id": ["d1", "d2", "d3", "d4"],
        "title": ["Paris", "", "Lyon", None],
        "text": [
            " Paris is the capital of France. ",
            "France is in Europe.",
            "Lyon is a city.",
            "Unused.",
        ],
    }
)
QUERIES = pd.DataFrame(
    {"query_id": ["q1", "q2", "q3"], "text": ["capital of france? ", "lyon", "unretrieved"]}
)
# Scores disagree with ranks on purpose: the rank column decides what the generator sees.
RUN = pd.DataFrame(
    {
        "query_id": ["q1", "q1", "q1", "q2"],
        "doc_id": ["d3", "d1", "d2", "d3"],
        "rank": [3, 1, 2, 1],
        "score": [9.0, 1.0, 2.0, 5.0],
    }
)


class StubLLM:
    """Records every engine call; answers each conversation with a canned text."""

    def __init__(self, answer: str = "<think>hmm [1]</think> Paris ") -> None:
        self.answer = answer
        self.calls: list[tuple[int, dict]] = []

    def chat(self, conversations, sampling):
        self.calls.append((len(conversations), dict(sampling[0])))
        return [Generation(self.answer, 10, 2, "stop") for _ in conversations]


def answer(tmp_path, llm, requests, sampling, batch_size=256):
    """Answers through a CachedGenerator over a cache directory of the test."""
    identity = ModelIdentity("smollm2", "sha256:0", "0.32.0", "bfloat16")
    with GenerationCache(tmp_path / "cache", "rag.t") as cache:
        generator = CachedGenerator(cache, identity, lambda: llm, batch_size)
        template = load_template_id("short_answer").fingerprint
        return generate_answers(generator, requests, template, sampling)


def test_rag_templates_are_the_shared_kind():
    short = load_template_id("short_answer")
    messages = short.render(" who? ", ["A {x}", "B"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "faithful question and answer assistant" in messages[0]["content"]
    assert "A {x}\nB\n" in messages[2]["content"]  # passages joined by newlines, braces kept
    assert "Question: who?\n" in messages[2]["content"]
    assert "a few words" in messages[2]["content"]
    sentence = load_template_id("sentence").render("q", ["p"])[2]["content"]
    assert "one or a few sentences" in sentence


def test_top_k_uses_ranks():
    best = top_k(RUN, 2)
    assert best.groupby("query_id")["doc_id"].agg(list).to_dict() == {
        "q1": ["d1", "d2"],
        "q2": ["d3"],
    }
    with pytest.raises(ValueError):
        top_k(RUN, 0)


def test_load_passages_from_shards_reads_only_what_is_asked(tmp_path):
    write_table(CORPUS.iloc[:2], tmp_path / "corpus" / "shard-00000.parquet", schemas.CORPUS)
    write_table(CORPUS.iloc[2:], tmp_path / "corpus" / "shard-00001.parquet", schemas.CORPUS)
    passages = load_passages(tmp_path / "corpus", ["d1", "d3", "d1"])
    assert passages == {"d1": "Paris Paris is the capital of France.", "d3": "Lyon Lyon is a city."}
    assert load_passages(CORPUS, ["d2"]) == {"d2": "France is in Europe."}
    with pytest.raises(KeyError, match="not in the corpus"):
        load_passages(tmp_path / "corpus", ["d1", "zzz"])


def test_build_requests_top_k_in_rank_order(caplog):
    template = load_template_id("short_answer")
    passages = load_passages(CORPUS, RUN["doc_id"])
    with caplog.at_level(logging.WARNING):
        requests = build_requests(
            RUN, QUERIES, passages, template, k=2, query_ids=["q1", "q2", "q3"]
        )
    assert "1 of 3 queries have no retrieved passage" in caplog.text
    assert [(r.query_id, r.doc_ids) for r in requests] == [("q1", ("d1", "d2")), ("q2", ("d3",))]
    assert requests[0].messages == template.render(
        "capital of france?", ["Paris Paris is the capital of France.", "France is in Europe."]
    )
    every = build_requests(RUN, QUERIES, passages, template, k=1)
    assert [(r.query_id, r.doc_ids) for r in every] == [("q1", ("d1",)), ("q2", ("d3",))]
    with pytest.raises(KeyError, match="no text"):
        build_requests(RUN, QUERIES, passages, template, k=1, query_ids=["q404"])


def test_answers_are_batched_cleaned_and_reused_from_the_cache(tmp_path):
    template = load_template_id("short_answer")
    requests = build_requests(RUN, QUERIES, load_passages(CORPUS, RUN["doc_id"]), template, k=2)
    sampling = {"temperature": 0.0, "max_tokens": 32}
    llm = StubLLM()
    out = answer(tmp_path, llm, requests, sampling, batch_size=1)
    assert llm.calls == [(1, sampling), (1, sampling)]
    assert list(out.columns) == schemas.GENERATIONS.names
    assert out["prediction"].tolist() == ["Paris", "Paris"]
    assert out["raw_output"].iloc[0] == "<think>hmm [1]</think> Paris "
    assert out["doc_ids"].iloc[0] == ["d1", "d2"]
    assert out["prompt_key"].str.fullmatch(r"[0-9a-f]{64}").all()

    again = StubLLM("never used")
    cached = answer(tmp_path, again, requests, sampling)
    assert again.calls == [] and cached.equals(out)
    changed = answer(tmp_path, again, requests, {**sampling, "max_tokens": 64})
    assert again.calls == [(2, {"temperature": 0.0, "max_tokens": 64})]
    assert changed["prediction"].tolist() == ["never used", "never used"]


def test_identical_prompts_are_asked_once(tmp_path):
    template = load_template_id("short_answer")
    run = pd.DataFrame(
        {"query_id": ["a", "b"], "doc_id": ["d1", "d1"], "rank": [1, 1], "score": [1.0, 1.0]}
    )
    queries = pd.DataFrame({"query_id": ["a", "b"], "text": ["same question", "same question"]})
    requests = build_requests(run, queries, load_passages(CORPUS, ["d1"]), template, k=1)
    llm = StubLLM("x")
    out = answer(tmp_path, llm, requests, {})
    assert llm.calls == [(1, {})] and out["query_id"].tolist() == ["a", "b"]
    assert out["prompt_key"].nunique() == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Paris\n", "Paris"), ("<think>\nlong [2] reasoning\n</think>\n\nParis", "Paris"), ("", "")],
)
def test_clean_prediction(raw, expected):
    assert clean_prediction(raw) == expected


def test_select_questions_keeps_answerable_queries_of_the_split_and_samples_stably():
    from utilann.rag.job import select_questions

    answers = pd.DataFrame(
        {
            "query_id": [10, 2, 3, 4, 5, 6],
            "answers": [["a"], ["b"], [], ["d"], ["e"], ["f"]],
        }
    )
    qrels = pd.DataFrame(
        {
            "query_id": ["10", "2", "3", "4", "5", "6"],
            "split": ["test", "test", "test", "test", "test", "dev"],
        }
    )
    every = select_questions(answers, qrels, "test", None, seed=0)
    assert list(every["query_id"]) == ["10", "2", "4", "5"]  # string ids, sorted; 3 unanswerable
    capped = select_questions(answers, qrels, "test", 2, seed=0)
    assert len(capped) == 2 and set(capped["query_id"]) <= set(every["query_id"])
    assert capped.equals(select_questions(answers.iloc[::-1], qrels, "test", 2, seed=0))
