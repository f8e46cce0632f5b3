"""Gold-answer loaders for the RAG datasets -> ANSWERS tables (query_id, answers).

Formats (``load_answers(path, fmt)``):

* ``beir`` - a jsonl with the query id in ``_id`` and ``answers`` (list) or ``answer`` (string),
  as ``shared/data/*/…-beir/answers.jsonl`` and the authors' BEIR-derived files have.
* ``nq-open`` - the official NQ-open jsonl, ``{"question", "answer": [..]}``, without ids.
* ``hotpotqa`` - HotpotQA's JSON list (or jsonl) of ``{"question", "answer", ...}``; the
  original dev files carry ``_id``, the simplified 7,405-question file does not.
* ``msmarco`` - MS MARCO QA, in any of its published forms: the column-oriented v2.1 release
  JSON (``dev_v2.1.json``, optionally ``.gz``: ``{"query_id": {"0": ..}, "answers": {"0": [..]},
  "query": .., "passages": .., "wellFormedAnswers": ..}``), the v1.1 release (one JSON record
  per line with the same fields), the official evaluation's reference jsonl
  (``{"query_id": .., "answers": [..]}`` per line), or the Hugging Face export
  (``microsoft/ms_marco``, ``v2.1/validation-*.parquet``: columns ``answers``, ``passages``,
  ``query``, ``query_id``, ``query_type``, ``wellFormedAnswers``). ``No Answer Present.`` is not
  an answer: like the official evaluation, such queries are excluded. ``wellFormedAnswers`` is
  ``"[]"`` (a string) when empty in the release JSON and an empty list in the parquet export.

Files without query ids (NQ-open, simplified HotpotQA) are joined to a QUERIES table by question
text (lowercased, whitespace collapsed, trailing "?" dropped): that is how BEIR's NQ test
queries get their answers (the paper keeps the 2,255 of 3,452 that have one) and BEIR HotpotQA
its 7,405 dev answers. Without a queries table their ids are the 0-based record numbers.
Queries left without any answer are dropped and counted in the log.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from . import schemas

log = logging.getLogger(__name__)

FORMATS = ("beir", "nq-open", "hotpotqa", "msmarco")
MSMARCO_NO_ANSWER = "No Answer Present."
MSMARCO_FIELDS = ("answers", "wellFormedAnswers")
MSMARCO_COLUMNS = ("query_id", *MSMARCO_FIELDS)


class AnswersError(ValueError):
    """A gold-answer file is malformed; the message names the file and record."""


def _open(path: Path):
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8")
    )


def _is_columns(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(isinstance(v, dict) for v in data.values())


def read_json_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) from jsonl, a JSON list or column-oriented JSON (optionally .gz).

    The layout is recognised from the content, not the name (the official MS MARCO reference
    files are jsonl named ``.json``). ``where`` is ``file:line`` or ``file[key]``, for errors.
    """
    path = Path(path)
    with _open(path) as handle:
        lines = enumerate(handle, start=1)
        first = next(((n, text) for n, text in lines if text.strip()), None)
        if first is None:
            return
        try:
            record = json.loads(first[1])
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and not _is_columns(record):
            yield f"{path}:{first[0]}", record
            for lineno, text in lines:  # the same iterator: continues after the first record
                if text.strip():
                    yield f"{path}:{lineno}", _loads(text, f"{path}:{lineno}")
            return
        handle.seek(0)
        data = _loads(handle.read(), str(path))
    if isinstance(data, list):
        for index, record in enumerate(data):
            if not isinstance(record, dict):
                raise AnswersError(f"{path}[{index}]: expected a JSON object")
            yield f"{path}[{index}]", record
    elif _is_columns(data):
        # Column-oriented (MS MARCO v2.1 release): {"field": {"row key": value}}.
        for key in next(iter(data.values())):
            yield f"{path}[{key}]", {name: column.get(key) for name, column in data.items()}
    else:
        raise AnswersError(f"{path}: expected jsonl, a JSON list or column-oriented JSON")


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise AnswersError(f"{where}: not valid JSON ({err.msg})") from None


def _answers_of(record: dict[str, Any], where: str) -> list[str]:
    """A record's ``answers`` (or ``answer``) as a list of non-empty stripped strings."""
    value = record.get("answers", record.get("answer"))
    if value is None:
        raise AnswersError(f"{where}: missing 'answers' (or 'answer')")
    return _answer_list(value, where)


def _answer_list(value: Any, where: str) -> list[str]:
    """Gold answers as a list of non-empty stripped strings (a single string is one answer)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise AnswersError(f"{where}: answers must be a string or a list of strings, got {value!r}")
    return [text for text in (str(a).strip() for a in value) if text]


def _frame(pairs: Iterable[tuple[str, list[str]]], source: Path) -> pd.DataFrame:
    """ANSWERS table from (query_id, answers); repeated ids are an error, empty lists dropped."""
    merged: dict[str, list[str]] = {}
    empty = 0
    for qid, answers in pairs:
        if qid in merged:
            raise AnswersError(f"{source}: query id {qid!r} appears twice")
        if answers:
            merged[qid] = answers
        else:
            empty += 1
    if empty:
        log.warning("%s: %d queries without any answer are dropped", source, empty)
    return pd.DataFrame(list(merged.items()), columns=schemas.ANSWERS.names)


def question_key(text: str) -> str:
    """How questions are matched across files: lowercase, collapsed spaces, no trailing '?'."""
    return " ".join(text.lower().split()).rstrip("?").rstrip()


def _by_question(
    records: list[tuple[str, str, list[str]]], queries: pd.DataFrame | None, source: Path
) -> pd.DataFrame:
    """ANSWERS from (fallback id, question, answers) records, keyed by ``queries`` when given.

    The same question may occur more than once in an answer file: its answer lists are merged.
    """
    if queries is None:
        return _frame(((fallback, answers) for fallback, _, answers in records), source)
    by_question: dict[str, list[str]] = {}
    for _, question, answers in records:
        known = by_question.setdefault(question_key(question), [])
        known.extend(a for a in answers if a not in known)
    pairs = []
    for qid, text in zip(queries["query_id"].astype(str), queries["text"]):
        answers = by_question.get(question_key(str(text)))
        if answers is not None:
            pairs.append((qid, answers))
    log.info("%s: %d of %d queries matched an answered question", source, len(pairs), len(queries))
    return _frame(pairs, source)


def load_beir_answers(path: str | os.PathLike[str]) -> pd.DataFrame:
    """``{"_id", "answers": [..]}`` or ``{"_id", "answer": ".."}`` per line."""

    def pairs() -> Iterator[tuple[str, list[str]]]:
        for where, record in read_json_records(path):
            if "_id" not in record:
                raise AnswersError(f"{where}: missing '_id'")
            yield str(record["_id"]), _answers_of(record, where)

    return _frame(pairs(), Path(path))


def load_question_answers(
    path: str | os.PathLike[str], queries: pd.DataFrame | None = None
) -> pd.DataFrame:
    """NQ-open or HotpotQA records (``{"question", "answer" or "answers", ["_id"]}``).

    With ``queries`` (QUERIES table) they are matched by question text; otherwise keyed by
    ``_id``, or by the record number when the file has none (NQ-open, simplified HotpotQA).
    """
    records = []
    for index, (where, record) in enumerate(read_json_records(path)):
        if "question" not in record:
            raise AnswersError(f"{where}: missing 'question'")
        fallback = str(record.get("_id", index))
        records.append((fallback, str(record["question"]), _answers_of(record, where)))
    return _by_question(records, queries, Path(path))


def _parquet_records(path: Path, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) of a Parquet file, or of every ``*.parquet`` in a directory."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise AnswersError(f"{path}: no .parquet file in the directory")
    for file in files:
        table = pq.read_table(file)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise AnswersError(
                f"{file}: missing column(s) {missing}; the Hugging Face export of MS MARCO QA "
                "(microsoft/ms_marco) has query_id, query, answers, passages, wellFormedAnswers"
            )
        present = [c for c in MSMARCO_COLUMNS if c in table.column_names]
        for index, record in enumerate(table.select(present).to_pylist()):
            yield f"{file}[row {index}]", record


def _is_parquet(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".parquet"


def load_msmarco_qa(path: str | os.PathLike[str], field: str = "answers") -> pd.DataFrame:
    """MS MARCO QA gold answers (``field``: ``answers`` or ``wellFormedAnswers``) from any of
    the published forms (module docstring); the layout is recognised from the content.

    Answers equal to ``No Answer Present.`` are removed, so unanswerable queries drop out, as
    they do in the official evaluation.
    """
    if field not in MSMARCO_FIELDS:
        raise ValueError(
            f"unknown MS MARCO answer field {field!r}; expected one of {MSMARCO_FIELDS}"
        )
    path = Path(path)
    if not path.exists():
        raise AnswersError(missing_answers_help(str(path), "msmarco"))
    records = (
        _parquet_records(path, ["query_id", field])
        if _is_parquet(path)
        else read_json_records(path)
    )

    def pairs() -> Iterator[tuple[str, list[str]]]:
        for where, record in records:
            if "query_id" not in record:
                raise AnswersError(f"{where}: missing 'query_id'")
            value = record.get(field)
            if value is None or value == "[]":
                value = []
            answers = [a for a in _answer_list(value, where) if a != MSMARCO_NO_ANSWER]
            yield str(record["query_id"]), answers

    return _frame(pairs(), Path(path))


ANSWER_FILES = {
    "msmarco": "MS MARCO QA v2.1 dev: dev_v2.1.json.gz (the MS MARCO QA release; v1.1: "
    "dev_v1.1.json) or the Hugging Face export microsoft/ms_marco, v2.1/"
    "validation-00000-of-00001.parquet (a folder of such files works too)",
    "nq-open": "NQ-open: NQ-open.dev.jsonl / NQ-open.test.jsonl ({question, answer: [..]} per "
    "line, google-research-datasets/natural-questions, nq_open/)",
    "hotpotqa": "HotpotQA: hotpot_dev_distractor_v1.json or the simplified 7,405-question file "
    "({question, answer} records)",
    "beir": "a jsonl with {_id, answers: [..]} per line (the query ids of the dataset)",
}


def missing_answers_help(path: str, fmt: str) -> str:
    """What to do when a configured gold-answer file is absent (machines are often offline)."""
    return (
        f"gold answers not found: {path} (format {fmt!r}). Nothing is downloaded for it "
        f"(ir_datasets' msmarco-qna is no longer hosted): put the file there yourself - "
        f"{ANSWER_FILES.get(fmt, fmt)} - or point the config's `answers.path` at your copy"
    )


def load_answers(
    path: str | os.PathLike[str], fmt: str, queries: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Load a gold-answer file of format ``fmt`` (one of :data:`FORMATS`) as an ANSWERS table.

    ``queries`` (QUERIES table) is used by the formats without query ids.
    """
    if fmt == "beir":
        return load_beir_answers(path)
    if fmt in ("nq-open", "hotpotqa"):
        return load_question_answers(path, queries)
    if fmt == "msmarco":
        return load_msmarco_qa(path)
    raise ValueError(f"unknown answers format {fmt!r}; expected one of {FORMATS}")
