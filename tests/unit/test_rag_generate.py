"""RAG prompt building and generation with a stub LLM (no model needed)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import pytest

from utilann import schemas
from utilann.io import read_table, write_table
from utilann.rag.generate import (
    build_requests,
    clean_prediction,
    generate,
    load_passages,
    prompt_key,
    top_k,
)
from utilann.rag.prompts import TemplateError, available_templates, format_passage, load_template

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


@dataclass
class Output:
    text: str


class StubLLM:
    """Records every call; answers each conversation with a canned text."""

    def __init__(self, answer: str = "<think>hmm [1]</think> Paris ") -> None:
        self.answer = answer
        self.calls: list[tuple[int, dict]] = []

    def chat(self, conversations, sampling):
        self.calls.append((len(conversations), sampling))
        return [Output(self.answer) for _ in conversations]


def test_templates_ship_and_render_the_paper_conversation():
    assert available_templates() == ["sentence.v1", "short_answer.v1"]
    short = load_template("short_answer")
    assert short.id == "short_answer.v1" and load_template("short_answer.v1") == short
    messages = short.render(" who? ", ["A {x}", "B"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "faithful question and answer assistant" in messages[0]["content"]
    assert "A {x}\nB\n" in messages[2]["content"]  # passages joined by newlines, braces kept
    assert "Question: who?\n" in messages[2]["content"]
    assert "a few words" in messages[2]["content"]
    assert "one or a few sentences" in load_template("sentence").render("q", ["p"])[2]["content"]
    assert short.sha256 != load_template("sentence").sha256


def test_unknown_template_lists_the_shipped_ones():
    with pytest.raises(TemplateError, match="shipped: \\['sentence.v1', 'short_answer.v1'\\]"):
        load_template("short_answer.v9")
    with pytest.raises(TemplateError):
        load_template("nonsense")


def test_format_passage():
    assert format_passage(" Paris ", " text ") == "Paris text"
    assert format_passage(None, "text") == "text"


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
    template = load_template("short_answer")
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


def test_generate_batches_cleans_and_reuses_cached_answers(tmp_path):
    template = load_template("short_answer")
    requests = build_requests(RUN, QUERIES, load_passages(CORPUS, RUN["doc_id"]), template, k=2)
    sampling = {"temperature": 0.0, "max_tokens": 32}
    llm = StubLLM()
    out = generate(llm, requests, sampling, model="smollm2", batch_size=1)
    assert llm.calls == [(1, sampling), (1, sampling)]
    assert list(out.columns) == schemas.GENERATIONS.names
    assert out["prediction"].tolist() == ["Paris", "Paris"]
    assert out["raw_output"].iloc[0] == "<think>hmm [1]</think> Paris "
    assert out["doc_ids"].iloc[0] == ["d1", "d2"]
    path = write_table(out, tmp_path / "nq.test.generations.parquet", schemas.GENERATIONS)

    again = StubLLM("never used")
    cached = generate(again, requests, sampling, model="smollm2", cache=read_table(path))
    assert again.calls == [] and cached["prediction"].tolist() == ["Paris", "Paris"]
    changed = generate(
        again, requests, {**sampling, "max_tokens": 64}, model="smollm2", cache=read_table(path)
    )
    assert again.calls == [(2, {"temperature": 0.0, "max_tokens": 64})]
    assert changed["prediction"].tolist() == ["never used", "never used"]


def test_identical_prompts_are_asked_once():
    template = load_template("short_answer")
    run = pd.DataFrame(
        {"query_id": ["a", "b"], "doc_id": ["d1", "d1"], "rank": [1, 1], "score": [1.0, 1.0]}
    )
    queries = pd.DataFrame({"query_id": ["a", "b"], "text": ["same question", "same question"]})
    requests = build_requests(run, queries, load_passages(CORPUS, ["d1"]), template, k=1)
    llm = StubLLM("x")
    out = generate(llm, requests, {}, model="m")
    assert llm.calls == [(1, {})] and out["query_id"].tolist() == ["a", "b"]


def test_backend_returning_too_few_outputs_is_an_error():
    class Broken(StubLLM):
        def chat(self, conversations, sampling):
            return []

    requests = build_requests(
        RUN, QUERIES, load_passages(CORPUS, RUN["doc_id"]), load_template("sentence"), k=1
    )
    with pytest.raises(RuntimeError, match="0 outputs for 2 prompts"):
        generate(Broken(), requests, {}, model="m")


def test_prompt_key_depends_on_model_sampling_and_messages():
    messages = [{"role": "user", "content": "hi"}]
    key = prompt_key(messages, {"temperature": 0.0}, "m")
    assert key == prompt_key(messages, {"temperature": 0.0}, "m")
    assert key != prompt_key(messages, {"temperature": 0.5}, "m")
    assert key != prompt_key(messages, {"temperature": 0.0}, "other")
    assert key != prompt_key([{"role": "user", "content": "hi!"}], {"temperature": 0.0}, "m")


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
