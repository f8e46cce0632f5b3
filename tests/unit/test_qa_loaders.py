"""Gold-answer loaders on the real NQ-open and HotpotQA files, and on MS MARCO-format samples.

The shared data lives at ``$UTILANN_SHARED_DATA`` (default ``<repo>/../shared/data``); tests
that need it are skipped with a reason when it is absent (``conftest.shared_dataset``).
"""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from conftest import shared_dataset

from utilann import schemas
from utilann.qa import (
    AnswersError,
    load_answers,
    load_beir_answers,
    load_msmarco_qa,
    load_question_answers,
    question_key,
)


def beir_queries(path) -> pd.DataFrame:
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return pd.DataFrame(
        {"query_id": [str(r["_id"]) for r in rows], "text": [r["text"] for r in rows]}
    )


def as_dict(answers: pd.DataFrame) -> dict[str, list[str]]:
    return {qid: list(a) for qid, a in zip(answers["query_id"], answers["answers"])}


# --- NQ-open --------------------------------------------------------------------------------


def test_nq_open_beir_answers():
    answers = load_answers(shared_dataset("nq-open", "oracle-beir", "answers.jsonl"), "beir")
    assert list(answers.columns) == schemas.ANSWERS.names
    assert len(answers) == 2655  # SOURCE.md: 2,655 oracle questions
    assert as_dict(answers)["nqo-q0"] == ["Wilhelm Conrad Röntgen"]


def test_nq_open_dev_without_ids_uses_record_numbers():
    answers = load_question_answers(shared_dataset("nq-open", "NQ-open.dev.jsonl"))
    assert len(answers) == 3610
    assert as_dict(answers)["0"] == ["14 December 1972 UTC", "December 1972"]


def test_nq_open_dev_matched_to_beir_queries_by_question():
    root = shared_dataset("nq-open")
    queries = beir_queries(root / "oracle-beir" / "queries.jsonl")
    matched = load_answers(root / "NQ-open.dev.jsonl", "nq-open", queries)
    # SOURCE.md: all 2,655 oracle questions occur in NQ-open.dev with identical answer lists.
    assert as_dict(matched) == as_dict(load_beir_answers(root / "oracle-beir" / "answers.jsonl"))


def test_gzipped_jsonl_with_answers_key():
    answers = load_question_answers(shared_dataset("nq-open", "nq-open-oracle.jsonl.gz"))
    assert len(answers) == 2655
    assert as_dict(answers)["0"] == ["Wilhelm Conrad Röntgen"]


# --- HotpotQA ------------------------------------------------------------------------------


def test_hotpotqa_beir_answers_with_a_single_answer_string():
    answers = load_beir_answers(shared_dataset("hotpotqa", "fullwiki500-beir", "answers.jsonl"))
    assert len(answers) == 500
    assert as_dict(answers)["5a7166395542994082a3e814"] == ["Kansas Song"]


def test_hotpotqa_simplified_dev_matched_by_question():
    root = shared_dataset("hotpotqa")
    simplified = root / "hotpot_dev_v1_simplified.json"
    assert len(load_answers(simplified, "hotpotqa")) == 7405  # the full dev set, Table 11
    queries = beir_queries(root / "fullwiki500-beir" / "queries.jsonl")
    matched = load_answers(simplified, "hotpotqa", queries)
    # SOURCE.md: all 500 examples occur in the simplified file with identical answers.
    assert as_dict(matched) == as_dict(
        load_beir_answers(root / "fullwiki500-beir" / "answers.jsonl")
    )


def test_hotpotqa_original_format_keeps_its_ids():
    answers = load_answers(
        shared_dataset("hotpotqa", "hotpot_dev_fullwiki_sample500.jsonl"), "hotpotqa"
    )
    assert len(answers) == 500
    assert as_dict(answers)["5a7166395542994082a3e814"] == ["Kansas Song"]


# --- question matching ----------------------------------------------------------------------


def test_question_key_and_merged_duplicates(tmp_path):
    assert question_key("  Who  wrote Hamlet? ") == "who wrote hamlet"
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"question": "who wrote hamlet?", "answer": ["Shakespeare"]},
                {"question": "Who wrote Hamlet", "answer": ["William Shakespeare", "Shakespeare"]},
                {"question": "unasked", "answer": ["x"]},
            ]
        )
    )
    queries = pd.DataFrame(
        {"query_id": ["7", "8"], "text": ["Who wrote  Hamlet?", "no answer here"]}
    )
    assert as_dict(load_question_answers(path, queries)) == {
        "7": ["Shakespeare", "William Shakespeare"]
    }


# --- MS MARCO QA ---------------------------------------------------------------------------


def test_msmarco_reference_jsonl_drops_no_answer_queries(tmp_path):
    path = tmp_path / "dev_references.json"  # the official files are jsonl named .json
    lines = [
        {"query_id": 1102432, "answers": ["A corporation is a company or group of people."]},
        {"query_id": 1102431, "answers": ["No Answer Present."]},
        {"query_id": 1090282, "answers": ["Yes", "No Answer Present."]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    answers = load_answers(path, "msmarco")
    assert as_dict(answers) == {
        "1102432": ["A corporation is a company or group of people."],
        "1090282": ["Yes"],
    }


def test_msmarco_v21_column_json_and_well_formed_answers(tmp_path):
    release = {
        "query_id": {"0": 19699, "1": 19700},
        "query": {"0": "what is rba", "1": "what is a kiwi"},
        "answers": {
            "0": ["Results-Based Accountability is a disciplined way of thinking."],
            "1": ["A bird."],
        },
        "wellFormedAnswers": {"0": "[]", "1": ["A kiwi is a flightless bird."]},
    }
    path = tmp_path / "dev_v2.1.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(release, handle)
    assert as_dict(load_msmarco_qa(path)) == {
        "19699": ["Results-Based Accountability is a disciplined way of thinking."],
        "19700": ["A bird."],
    }
    assert as_dict(load_msmarco_qa(path, field="wellFormedAnswers")) == {
        "19700": ["A kiwi is a flightless bird."]
    }


# Records in the real MS MARCO QA layouts (written here, not copied from the data): the
# passages of each query with their is_selected flag, several answers, an unanswerable query.
QNA = [
    {
        "query_id": 1048578,
        "query": "cost of endless pools/swim spa",
        "query_type": "NUMERIC",
        "answers": ["$10,000 to $15,000", "Between $10,000 and $15,000 installed."],
        "wellFormedAnswers": ["An endless pool costs $10,000 to $15,000."],
        "passages": {
            "is_selected": [0, 1],
            "passage_text": ["Swim spas are small pools.", "Endless Pools cost $10,000-$15,000."],
            "url": ["http://a.example/1", "http://b.example/2"],
        },
    },
    {
        "query_id": 1048579,
        "query": "what is pcnt",
        "query_type": "DESCRIPTION",
        "answers": ["No Answer Present."],
        "wellFormedAnswers": [],
        "passages": {"is_selected": [0], "passage_text": ["PCNT is a gene."], "url": ["http://c"]},
    },
]
QNA_ANSWERS = {"1048578": ["$10,000 to $15,000", "Between $10,000 and $15,000 installed."]}


def test_msmarco_v11_release_jsonl(tmp_path):
    path = tmp_path / "dev_v1.1.json"  # one record per line, passages as a list of objects
    lines = []
    for record in QNA:
        passages = [
            {"is_selected": s, "passage_text": t, "url": u}
            for s, t, u in zip(*record["passages"].values())
        ]
        lines.append(json.dumps({**record, "passages": passages}))
    path.write_text("\n".join(lines) + "\n")
    assert as_dict(load_answers(path, "msmarco")) == QNA_ANSWERS


def test_msmarco_huggingface_parquet_export(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "v2.1"
    folder.mkdir()
    table = pa.Table.from_pylist(QNA)  # HF columns: answers, passages, query, query_id, ...
    assert table.schema.field("query_id").type == pa.int64()
    pq.write_table(table, folder / "validation-00000-of-00001.parquet")
    assert as_dict(load_msmarco_qa(folder / "validation-00000-of-00001.parquet")) == QNA_ANSWERS
    assert as_dict(load_msmarco_qa(folder)) == QNA_ANSWERS  # a folder of shards
    assert as_dict(load_msmarco_qa(folder, field="wellFormedAnswers")) == {
        "1048578": ["An endless pool costs $10,000 to $15,000."]
    }
    pq.write_table(pa.table({"question": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(AnswersError, match="missing column"):
        load_msmarco_qa(tmp_path / "other.parquet")


def test_missing_msmarco_file_says_where_to_put_which_file(tmp_path):
    with pytest.raises(AnswersError) as err:
        load_msmarco_qa(tmp_path / "msmarco-qa" / "dev_v2.1.json.gz")
    message = str(err.value)
    assert "dev_v2.1.json.gz" in message and "microsoft/ms_marco" in message
    assert "msmarco-qna is no longer hosted" in message and str(tmp_path) in message


# --- errors --------------------------------------------------------------------------------


def test_errors_name_the_file_and_record(tmp_path):
    bad = tmp_path / "answers.jsonl"
    bad.write_text('{"_id": "q1", "answers": ["a"]}\n{"_id": "q2"}\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: missing 'answers'"):
        load_beir_answers(bad)
    bad.write_text('{"_id": "q1", "answers": ["a"]}\n{"_id": "q1", "answers": ["b"]}\n')
    with pytest.raises(AnswersError, match="appears twice"):
        load_beir_answers(bad)
    bad.write_text('{"_id": "q1", "answers": ["a"]}\nnot json\n')
    with pytest.raises(AnswersError, match=r"answers.jsonl:2: not valid JSON"):
        load_beir_answers(bad)
    with pytest.raises(ValueError, match="unknown answers format"):
        load_answers(bad, "squad")
    with pytest.raises(ValueError, match="unknown MS MARCO answer field"):
        load_msmarco_qa(bad, field="passages")
