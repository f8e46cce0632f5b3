"""Constrained decoding grammars, checked with llguidance itself (vLLM's guidance backend).

A byte-level tokenizer (one token per byte) lets llguidance's matcher decide whether a whole
string is in the grammar's language, without a model: exactly the check the backend makes
token by token while the LLM decodes. Every admitted answer must also parse as ``ok`` with
the same ids (the grammar and the parser read one format).
"""

from __future__ import annotations

import itertools
import random

import pytest

from utilann.annotate.parse import parse_output
from utilann.llm.grammar import EXACT_RANKING_MAX, answer_grammar, constrained
from utilann.llm.templates import AnswerSyntax, TemplateError, load_template

llguidance = pytest.importorskip("llguidance")


class _Bytes:
    """A tokenizer whose tokens are the 256 bytes plus an end-of-sequence token."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, text):
        return list(text if isinstance(text, bytes) else text.encode())


TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()), slices=[])


def admits(grammar: str, text: str) -> bool:
    matcher = llguidance.LLMatcher(TOKENIZER, grammar, log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return (
        matcher.consume_tokens(list(text.encode()))
        and matcher.is_accepting()
        and not matcher.is_error()
    )


SELECTION = AnswerSyntax.default("selection")
RANKING = AnswerSyntax.default("ranking")


def test_selection_window_admits_distinct_in_range_ids_only():
    grammar = answer_grammar(SELECTION, 16)  # one RelSel window of the paper
    for good in ["My selection: []", "My selection: [1]", "My selection: [1],[4],[16]"]:
        assert admits(grammar, good), good
    for bad in [
        "My selection: [17]",  # out of range
        "My selection: [0]",
        "My selection: [3],[3]",  # duplicate
        "My selection: [4],[1]",  # not ascending: each set has one spelling
        "My selection: [1], [4]",  # not the template's separator
        "My selection: [1],",
        "My selection: ",
        "[1],[4]",  # no prefix
        "My selection: [1] because it is relevant",
    ]:
        assert not admits(grammar, bad), bad


def test_selection_without_empty_answer_needs_an_id():
    syntax = AnswerSyntax("selection", prefix="", separator=", ", empty=None)
    grammar = answer_grammar(syntax, 3)
    assert admits(grammar, "[2], [3]")
    assert not admits(grammar, "[]") and not admits(grammar, "")


def test_ranking_admits_exactly_the_permutations_of_the_shown_ids():
    n = 5
    grammar = answer_grammar(RANKING, n)
    for perm in itertools.permutations(range(1, n + 1)):
        assert admits(grammar, " > ".join(f"[{i}]" for i in perm))
    for bad in [
        "[1] > [2] > [3] > [4]",  # leaves one out
        "[1] > [2] > [3] > [4] > [4]",  # repeated id
        "[1] > [2] > [3] > [4] > [6]",  # out of range
        "[1] > [2] > [3] > [4] > [5] > [1]",
        "[1] > [2] > [3] > [4] > [5]>",
    ]:
        assert not admits(grammar, bad), bad


def test_longest_exact_ranking_rejects_repeats():
    n = EXACT_RANKING_MAX
    grammar = answer_grammar(RANKING, n)
    order = list(range(1, n + 1))
    random.Random(0).shuffle(order)
    good = " > ".join(f"[{i}]" for i in order)
    assert admits(grammar, good)
    assert not admits(grammar, good.replace(f"[{order[-1]}]", f"[{order[0]}]"))


def test_long_rankings_keep_count_and_range():
    n = EXACT_RANKING_MAX + 4
    grammar = answer_grammar(RANKING, n)
    assert admits(grammar, " > ".join(f"[{i}]" for i in range(n, 0, -1)))
    assert not admits(grammar, " > ".join(f"[{i}]" for i in range(1, n)))
    assert not admits(grammar, " > ".join(f"[{i}]" for i in range(2, n + 2)))


def test_text_is_one_bounded_non_empty_paragraph():
    grammar = answer_grammar(AnswerSyntax("text", max_chars=20), 0)
    assert admits(grammar, "Vitamin D helps.")
    assert not admits(grammar, "")
    assert not admits(grammar, " leading space")
    assert not admits(grammar, "two\nlines")
    assert not admits(grammar, "x" * 21)


@pytest.mark.parametrize("fmt,n", [("selection", 9), ("ranking", 4)])
def test_every_admitted_answer_parses_ok_with_its_ids(fmt, n):
    syntax = AnswerSyntax.default(fmt)
    grammar = answer_grammar(syntax, n)
    rng = random.Random(1)
    for _ in range(25):
        if fmt == "selection":
            ids = sorted(rng.sample(range(1, n + 1), rng.randint(0, n)))
            text = syntax.prefix + (",".join(f"[{i}]" for i in ids) or syntax.empty)
        else:
            ids = rng.sample(range(1, n + 1), n)
            text = " > ".join(f"[{i}]" for i in ids)
        assert admits(grammar, text)
        parsed = parse_output(fmt, text, n)
        assert parsed.status == "ok" and list(parsed.ids) == ids, (text, parsed)


def test_packaged_templates_ask_for_the_default_syntax():
    for version in ("v1", "v1-small"):
        for name in ("relsel", "utilsel"):
            template = load_template(name, version)
            assert template.answer_syntax == SELECTION
            assert "My selection:" in template.final
        assert load_template("utilrank", version).answer_syntax == RANKING
    assert load_template("utilrank", "v2").answer_syntax == RANKING


@pytest.mark.parametrize("name", ["relsel", "utilsel"])
def test_v2_selection_grammar_is_the_format_its_prompt_asks_for(name):
    template = load_template(name, "v2")
    assert "My selection:[[i],[j],...]" in template.final
    grammar = answer_grammar(template.answer_syntax, 5)
    for good, ids in [("My selection:[[1],[4]]", (1, 4)), ("My selection:[]", ())]:
        assert admits(grammar, good), good
        parsed = parse_output("selection", good, 5)
        assert (parsed.ids, parsed.status) == (ids, "ok")
    for bad in ["My selection: [1],[4]", "My selection:[[1],[4]", "My selection:[1]]"]:
        assert not admits(grammar, bad), bad


def test_template_answer_key_overrides_the_defaults_and_is_checked():
    from utilann.llm.templates import parse_template

    base = "answer_format: selection\npassage: '[{index}] {passage}'\nfinal: '{passages}'\n"
    template = parse_template(
        (base + "answer: {prefix: 'Selected: ', empty: null}\n").encode(), "x", "v9"
    )
    assert template.answer_syntax == AnswerSyntax("selection", prefix="Selected: ", empty=None)
    with pytest.raises(TemplateError, match="non-digit"):
        parse_template((base + "answer: {item: '{id}'}\n").encode(), "x", "v9")
    with pytest.raises(TemplateError, match="answer"):
        parse_template((base + "answer: {colour: red}\n").encode(), "x", "v9")


def test_constrained_sampling_carries_the_grammar_into_vllm():
    sampling = constrained({"temperature": 0.0, "max_tokens": 32}, SELECTION, 3)
    assert sampling["max_tokens"] == 32
    assert sampling["structured_outputs"]["grammar"] == answer_grammar(SELECTION, 3)
    pytest.importorskip("vllm")
    from vllm.sampling_params import StructuredOutputsParams

    from utilann.llm.engine import sampling_params

    params = sampling_params(sampling)
    assert isinstance(params.structured_outputs, StructuredOutputsParams)
    assert params.structured_outputs.grammar == sampling["structured_outputs"]["grammar"]


def test_a_constrained_job_starts_its_engine_with_the_grammar_backend():
    from utilann.annotate.job import engine_kwargs
    from utilann.llm.grammar import BACKEND

    assert engine_kwargs({"dtype": "bfloat16"}, False) == {"dtype": "bfloat16"}
    assert engine_kwargs({"dtype": "bfloat16"}, True) == {
        "dtype": "bfloat16",
        "structured_outputs_config": {"backend": BACKEND},
    }
    mine = {"structured_outputs_config": {"backend": "xgrammar"}}  # the config's choice wins
    assert engine_kwargs(mine, True) == mine
