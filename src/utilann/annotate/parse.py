"""Parsing LLM outputs by answer format (selection, ranking, text), recording how it went.

A step's template declares its ``answer_format``; :func:`parse_output` reads an output in that
format. The authors' code (process.ipynb) took every ``[n]`` anywhere in the output, which
counts numbers inside ``<think>`` blocks and silently accepts junk. Here every output gets a
status:

``ok``        the answer has the requested shape (an explicit empty selection is ``ok``);
``repaired``  usable numbers were recovered but something had to be fixed or dropped
              (text around the answer, duplicates, out-of-range numbers, "Passage 3" style,
              bare numbers, a ranking that leaves passages out, a truncated output);
``failed``    nothing usable: empty output, prompt too long, only thinking, no numbers.

``issues`` lists what was seen, for the report. Numbers are 1-based as shown in the prompt.
As in the original, a ranking is not completed with the passages the LLM left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from utilann.llm.engine import PROMPT_TOO_LONG

OK, REPAIRED, FAILED = "ok", "repaired", "failed"
STATUSES = (OK, REPAIRED, FAILED)

#: issues that are only informational (the answer is still in the requested shape)
_BENIGN = frozenset({"think", "explicit_none"})

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BRACKETS = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")
_PASSAGE_WORDS = re.compile(
    r"\b(?:passages?|docs?|documents?)\s*#?\s*(\d+(?:\s*(?:,|&|and|or)\s*#?\s*\d+)*)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+")
_PREFIX = re.compile(
    r"^\s*(?:\*\*)?\s*(?:my\s+)?(?:selection|ranking|answer|output|result)s?\s*(?:\*\*)?\s*[:=-]\s*",
    re.IGNORECASE,
)
_NONE = re.compile(
    r"^\s*(?:\[\s*\]|none|nothing|no\s+(?:passage|document)s?(?:\s+(?:is|are)\s+\w+)?)\s*\.?\s*$",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"(?:[\s,;.>&\[\]\-|]|\band\b|\bor\b)+", re.IGNORECASE)


@dataclass(frozen=True)
class ParseResult:
    """What was read from one output, and the parse outcome.

    ``ids``: passage numbers (1-based, unique, in answer order) of a selection or ranking;
    ``text``: the cleaned answer of a ``text`` output.
    """

    ids: tuple[int, ...]
    status: str
    issues: tuple[str, ...]
    text: str = ""


def strip_thinking(text: str) -> tuple[str, list[str]]:
    """Remove reasoning blocks; return the visible answer and the issues seen.

    Handles complete ``<think>...</think>`` blocks, a closing tag without an opening one (chat
    templates that put ``<think>`` in the prompt) and an unclosed block (output cut while
    thinking: everything after ``<think>`` is dropped).
    """
    issues: list[str] = []
    if _THINK_BLOCK.search(text):
        issues.append("think")
        text = _THINK_BLOCK.sub(" ", text)
    lower = text.lower()
    if "</think>" in lower:
        issues.append("think")
        text = text[lower.rfind("</think>") + len("</think>") :]
        lower = text.lower()
    if "<think>" in lower:
        issues.append("unclosed_think")
        text = text[: lower.find("<think>")]
    return text.strip(), sorted(set(issues))


def _status(issues: list[str]) -> str:
    return REPAIRED if set(issues) - _BENIGN else OK


def _failed(issues: list[str], why: str) -> ParseResult:
    return ParseResult((), FAILED, tuple(sorted(set(issues) | {why})))


def _candidates(answer: str, issues: list[str]) -> list[int] | None:
    """Numbers in answer order from the first notation that yields any, or None."""
    found = [(m.start(), m.group(1)) for m in _BRACKETS.finditer(answer)]
    if found:
        if any("," in group for _, group in found):
            issues.append("list_format")
    else:
        found = [(m.start(), m.group(1)) for m in _PASSAGE_WORDS.finditer(answer)]
        if found:
            issues.append("passage_word")
        elif _NUMBER.search(answer) and not _SEPARATORS.sub("", _NUMBER.sub("", answer)):
            issues.append("bare_numbers")
            found = [(0, answer)]
    if not found:
        return None
    rest = answer
    for pattern in (_BRACKETS, _PASSAGE_WORDS, _NUMBER):
        rest = pattern.sub(" ", rest)
    if re.search(r"[^\W\d_]", _SEPARATORS.sub("", rest)):
        issues.append("extra_text")
    return [int(n) for _, group in found for n in _NUMBER.findall(group)]


def _clean_ids(numbers: list[int], n: int, issues: list[str]) -> list[int]:
    """Drop out-of-range numbers and repeats (first occurrence wins)."""
    seen: list[int] = []
    for number in numbers:
        if not 1 <= number <= n:
            issues.append("out_of_range")
        elif number in seen:
            issues.append("duplicate")
        else:
            seen.append(number)
    return seen


def _parse(text: str, n: int, finish_reason: str, ranking: bool) -> ParseResult:
    if finish_reason == PROMPT_TOO_LONG:
        return _failed([], "prompt_too_long")
    answer, issues = strip_thinking(text or "")
    if finish_reason == "length":
        issues.append("truncated")
    if not answer:
        return _failed(issues, "empty_output" if not (text or "").strip() else "no_answer")
    answer = _PREFIX.sub("", answer, count=1)
    if not ranking and _NONE.match(answer):
        return ParseResult((), OK, tuple(sorted(set(issues) | {"explicit_none"})))
    numbers = _candidates(answer, issues)
    if numbers is None:
        return _failed(issues, "no_ids")
    ids = _clean_ids(numbers, n, issues)
    if not ids:
        return _failed(issues, "no_valid_ids")
    if ranking and len(ids) < n:
        issues.append("missing")
    return ParseResult(tuple(ids), _status(issues), tuple(sorted(set(issues))))


def parse_selection(text: str, n: int, finish_reason: str = "stop") -> ParseResult:
    """Parse a selection answer (``My selection: [1],[4]``) over ``n`` shown passages."""
    return _parse(text, n, finish_reason, ranking=False)


def parse_ranking(text: str, n: int, finish_reason: str = "stop") -> ParseResult:
    """Parse a ranking answer (``[2] > [1] > [3]``) over ``n`` shown passages."""
    return _parse(text, n, finish_reason, ranking=True)


def parse_answer(text: str, finish_reason: str = "stop") -> ParseResult:
    """Clean a free-text answer: drop reasoning and a leading ``Answer:``; empty means failed."""
    if finish_reason == PROMPT_TOO_LONG:
        return ParseResult((), FAILED, ("prompt_too_long",))
    answer, issues = strip_thinking(text or "")
    answer = re.sub(r"^\s*answer\s*:\s*", "", answer, flags=re.IGNORECASE).strip()
    if finish_reason == "length":
        issues.append("truncated")
    if not answer:
        return ParseResult((), FAILED, tuple(sorted(set(issues) | {"empty_output"})))
    return ParseResult((), _status(issues), tuple(sorted(set(issues))), text=answer)


def parse_output(answer_format: str, text: str, n: int, finish_reason: str = "stop") -> ParseResult:
    """Read ``text`` as an answer of ``answer_format`` over ``n`` shown passages.

    ``answer_format`` is a template's (:data:`utilann.llm.templates.ANSWER_FORMATS`):
    ``selection``, ``ranking`` or ``text``.
    """
    if answer_format == "text":
        return parse_answer(text, finish_reason)
    if answer_format in ("selection", "ranking"):
        return _parse(text, n, finish_reason, ranking=answer_format == "ranking")
    raise ValueError(f"unknown answer format {answer_format!r}")
