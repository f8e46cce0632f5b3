"""The one passage formatter, against what each consumer produced before it existed."""

import json
from pathlib import Path

import pytest

from utilann.passages import format_passage, title_share

FIXTURE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "rendered_prompts.json").read_text("utf-8")
)
PASSAGES = [tuple(p) for p in FIXTURE["inputs"]["passages"]]


def test_annotation_passages_are_as_before():
    """Cut to max_words and whitespace-normalised, like the authors' annotation code."""
    words = FIXTURE["inputs"]["max_words"]
    assert [format_passage(t, x, words) for t, x in PASSAGES] == FIXTURE["formatted"]["annotation"]


def test_rag_passages_are_as_before():
    """Untruncated passages keep the corpus' own spacing (NQ has runs of spaces, NBSPs)."""
    assert [format_passage(t, x) for t, x in PASSAGES] == FIXTURE["formatted"]["rag"]


def test_encoder_strings_differ_from_before_only_in_whitespace():
    """The encoder used ``f"{title} {text}".strip()``: only a title's own edge spaces differ,
    which a WordPiece tokenizer ignores (tests/unit/test_dense.py checks the token ids)."""
    before = FIXTURE["formatted"]["encoder"]
    now = [format_passage(t, x) for t, x in PASSAGES]
    assert [s.split() for s in now] == [s.split() for s in before]
    assert now != before  # the fixture holds a SciFact title with a trailing space


@pytest.mark.parametrize(
    ("title", "text", "words", "expected"),
    [
        ("Title", "a b  c\n d e", 4, "Title a b c"),
        (None, " x ", 300, "x"),
        ("", "Body", None, "Body"),
        (None, "Body", None, "Body"),
        (" Paris ", " text  here ", None, "Paris text  here"),
        ("T", None, None, "T"),
        ("a\u00a0b", "c", 5, "a b c"),
    ],
)
def test_format_passage(title, text, words, expected):
    assert format_passage(title, text, words) == expected


@pytest.mark.parametrize(
    ("title", "text", "with_title", "separator", "expected"),
    [
        ("Title", "Body", True, " [SEP] ", "Title [SEP] Body"),
        ("", "Body", True, " [SEP] ", "Body"),  # no title: no dangling separator
        ("Title", "", True, " [SEP] ", "Title"),
        ("Title", "Body", False, " ", "Body"),
        (" Title ", " Body ", False, " [SEP] ", "Body"),
    ],
)
def test_passage_format_with_or_without_the_title(title, text, with_title, separator, expected):
    assert format_passage(title, text, with_title=with_title, separator=separator) == expected


def test_title_share():
    assert title_share(["a", "", None, " ", "b"]) == pytest.approx(0.4)
    assert title_share([]) == 0.0


def test_max_words_must_be_positive():
    with pytest.raises(ValueError, match="max_words"):
        format_passage("t", "x", 0)
