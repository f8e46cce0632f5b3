"""Parsing of LLM selection/ranking/answer outputs over a corpus of odd real-world shapes."""

import pytest

from utilann.annotate.parse import (
    parse_answer,
    parse_output,
    parse_ranking,
    parse_selection,
    strip_thinking,
)
from utilann.llm.engine import PROMPT_TOO_LONG

# (output text, passages shown, expected ids, expected status, issues that must be reported)
SELECTIONS = [
    ("My selection: [1],[4]", 5, (1, 4), "ok", set()),
    ("My selection:[[2],[3]].", 5, (2, 3), "ok", set()),
    ("[3], [1]", 5, (3, 1), "ok", set()),
    ("My selection: []", 5, (), "ok", {"explicit_none"}),
    ("None.", 5, (), "ok", {"explicit_none"}),
    ("No passages are relevant.", 5, (), "ok", {"explicit_none"}),
    (
        "Sure! The relevant passages are [2] and [5] because they discuss X.",
        5,
        (2, 5),
        "repaired",
        {"extra_text"},
    ),
    ("My selection: [2],[2],[3]", 5, (2, 3), "repaired", {"duplicate"}),
    ("My selection: [0],[2],[9]", 5, (2,), "repaired", {"out_of_range"}),
    ("Passage 3 and passage 1 are relevant.", 5, (3, 1), "repaired", {"passage_word"}),
    ("Passages 2, 4 and 5", 5, (2, 4, 5), "repaired", {"passage_word"}),
    ("1, 3, 4", 5, (1, 3, 4), "repaired", {"bare_numbers"}),
    ("My selection: [1, 3]", 5, (1, 3), "repaired", {"list_format"}),
    (
        "<think>Passage [1] mentions it, [2] does not.</think>My selection: [3]",
        5,
        (3,),
        "ok",
        {"think"},
    ),
    ("thinking about [4] and [5]...</think>\nMy selection: [2]", 5, (2,), "ok", {"think"}),
    (
        "<think>I should pick [1] but the output got cut",
        5,
        (),
        "failed",
        {"unclosed_think", "no_answer"},
    ),
    ("", 5, (), "failed", {"empty_output"}),
    ("   \n", 5, (), "failed", {"empty_output"}),
    ("I cannot answer that.", 5, (), "failed", {"no_ids"}),
    ("My selection: [i], [j],...", 5, (), "failed", {"no_ids"}),
    ("My selection: [7],[8]", 5, (), "failed", {"no_valid_ids", "out_of_range"}),
    ("1-1% of colorectal cancer patients are diagnosed late.", 5, (), "failed", {"no_ids"}),
    ("**My selection:** [4]", 5, (4,), "ok", set()),
]


@pytest.mark.parametrize("text, n, ids, status, issues", SELECTIONS)
def test_selection_corpus(text, n, ids, status, issues):
    result = parse_selection(text, n)
    assert result.ids == ids
    assert result.status == status
    assert issues <= set(result.issues)


RANKINGS = [
    ("[2] > [1] > [3]", 3, (2, 1, 3), "ok", set()),
    ("Ranking: [3] > [1] > [2].", 3, (3, 1, 2), "ok", set()),
    ("[2] > [2] > [1] > [3]", 3, (2, 1, 3), "repaired", {"duplicate"}),
    ("[2] > [1]", 3, (2, 1), "repaired", {"missing"}),
    ("[4] > [1] > [2] > [3]", 3, (1, 2, 3), "repaired", {"out_of_range"}),
    ("3 > 1 > 2", 3, (3, 1, 2), "repaired", {"bare_numbers"}),
    (
        "Passage 2 is the most useful, then passage 1.",
        3,
        (2, 1),
        "repaired",
        {"passage_word", "missing"},
    ),
    ("<think>[3] looks best</think>[1] > [2] > [3]", 3, (1, 2, 3), "ok", {"think"}),
    ("[]", 3, (), "failed", {"no_ids"}),
    ("", 3, (), "failed", {"empty_output"}),
]


@pytest.mark.parametrize("text, n, ids, status, issues", RANKINGS)
def test_ranking_corpus(text, n, ids, status, issues):
    result = parse_ranking(text, n)
    assert result.ids == ids
    assert result.status == status
    assert issues <= set(result.issues)


def test_truncated_output_is_repaired_not_trusted_blindly():
    result = parse_selection("My selection: [1],[2],[", 4, finish_reason="length")
    assert result.ids == (1, 2)
    assert result.status == "repaired"
    assert "truncated" in result.issues


def test_prompt_too_long_fails_without_parsing():
    result = parse_selection("[1]", 4, finish_reason=PROMPT_TOO_LONG)
    assert (result.ids, result.status, result.issues) == ((), "failed", ("prompt_too_long",))
    assert parse_answer("x", PROMPT_TOO_LONG).status == "failed"


def test_ids_inside_thinking_are_ignored():
    text = "<think>[1] [2] [3] are all candidates</think>\nMy selection: [2]"
    assert parse_selection(text, 3).ids == (2,)
    assert strip_thinking(text) == ("My selection: [2]", ["think"])


@pytest.mark.parametrize(
    "text, expected, status",
    [
        ("Aspirin lowers the risk.", "Aspirin lowers the risk.", "ok"),
        ("Answer: Aspirin lowers the risk.", "Aspirin lowers the risk.", "ok"),
        ("<think>hmm</think> It does.", "It does.", "ok"),
        ("", "", "failed"),
        ("<think>never finished", "", "failed"),
    ],
)
def test_answers(text, expected, status):
    result = parse_answer(text)
    assert (result.text, result.status) == (expected, status)


def test_parse_output_dispatches_on_the_answer_format():
    assert parse_output("selection", "My selection: [2]", 3).ids == (2,)
    assert parse_output("ranking", "[2] > [1]", 3) == parse_ranking("[2] > [1]", 3)
    answer = parse_output("text", "<think>x</think> Answer: Paris", 0)
    assert answer.text == "Paris" and answer.ids == () and answer.status == "ok"
    assert parse_output("text", "", 0, "length").status == "failed"
    with pytest.raises(ValueError, match="unknown answer format"):
        parse_output("poem", "x", 1)
