"""Ingestion validates its input and never leaves half-written output behind."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from utilann.datasets import DatasetError, ingest


def write_beir(root: Path, corpus_lines: list[str], qrels: list[str]) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n")
    queries = [{"_id": "q1", "text": "what is x"}, {"_id": "q2", "text": "what is y"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n"
    )
    return root


def doc(i: str, text: str = "text") -> str:
    return json.dumps({"_id": i, "title": f"title {i}", "text": text})


def run_ingest(src: Path, out: Path, shard_size: int = 2):
    return ingest(
        src,
        "beir",
        out / "corpus",
        out / "queries.parquet",
        out / "qrels.parquet",
        shard_size,
        answers_path=out / "answers.parquet",
        negatives_path=out / "negatives.parquet",
    )


def test_valid_beir_is_sharded(tmp_path):
    src = write_beir(
        tmp_path / "src", [doc("d1"), doc("d2"), doc("d3")], ["q1\td1\t1", "q2\td3\t2"]
    )
    counts = run_ingest(src, tmp_path / "out")
    assert counts == {"documents": 3, "queries": 2, "qrels": 2}
    shards = sorted((tmp_path / "out/corpus").glob("*.parquet"))
    assert [s.name for s in shards] == ["shard-00000.parquet", "shard-00001.parquet"]
    qrels = pd.read_parquet(tmp_path / "out/qrels.parquet")
    assert qrels.to_dict("records")[1] == {
        "query_id": "q2",
        "doc_id": "d3",
        "relevance": 2,
        "split": "test",
    }
    assert str(qrels["query_id"].dtype) in ("object", "string", "str")


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(p for p in out.rglob("*") if not p.name.startswith("."))


def test_corpus_line_not_json_names_file_and_line(tmp_path):
    src = write_beir(
        tmp_path / "src", [doc("d1"), '{"_id": "d2", "text": broken', doc("d3")], ["q1\td1\t1"]
    )
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: not valid JSON"):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_duplicate_document_ids(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1"), doc("d2"), doc("d1", "other")], ["q1\td1\t1"])
    with pytest.raises(
        DatasetError,
        match=r"corpus\.jsonl:3: duplicate document id 'd1' \(first seen at .*corpus\.jsonl:1\)",
    ):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_qrels_naming_unknown_document(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1", "q2\tnope\t1"])
    with pytest.raises(DatasetError, match=r"unknown document 'nope' for query 'q2'"):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_qrels_bad_relevance_and_missing_file(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\tyes"])
    with pytest.raises(DatasetError, match=r"test\.tsv:2: relevance 'yes' is not an integer"):
        run_ingest(src, tmp_path / "out")
    (src / "queries.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"queries\.jsonl: missing; a beir dataset needs"):
        run_ingest(src, tmp_path / "out")


def test_missing_field(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1"), json.dumps({"_id": "d2"})], ["q1\td1\t1"])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: missing field 'text'"):
        run_ingest(src, tmp_path / "out")


def test_tevatron_layout(tmp_path):
    src = tmp_path / "tev"
    src.mkdir()
    rec = {
        "query_id": "7",
        "query": "q text",
        "positive_passages": [{"docid": "p1", "title": "", "text": "pos"}],
        "negative_passages": [
            {"docid": "n1", "title": "t", "text": "neg1"},
            {"docid": "n2", "title": "", "text": "neg2"},
        ],
    }
    (src / "train.jsonl").write_text(json.dumps(rec) + "\n")
    out = tmp_path / "out"
    counts = ingest(
        src,
        "tevatron",
        out / "corpus",
        out / "q.parquet",
        out / "qrels.parquet",
        10,
        answers_path=out / "a.parquet",
        negatives_path=out / "neg.parquet",
    )
    assert counts == {"documents": 3, "queries": 1, "qrels": 1}
    negatives = pd.read_parquet(out / "neg.parquet")
    assert negatives.to_dict("records") == [
        {"query_id": "7", "doc_id": "n1", "rank": 1},
        {"query_id": "7", "doc_id": "n2", "rank": 2},
    ]


def test_msmarco_layout(tmp_path):
    src = tmp_path / "mm"
    src.mkdir()
    (src / "collection.tsv").write_text("0\tfirst passage\n1\tsecond passage\n")
    (src / "queries.dev.tsv").write_text("10\twhat first\n")
    (src / "qrels.dev.tsv").write_text("10 0 1 1\n")
    out = tmp_path / "out"
    ingest(
        src,
        "msmarco",
        out / "corpus",
        out / "q.parquet",
        out / "qrels.parquet",
        10,
        answers_path=out / "a.parquet",
        negatives_path=out / "n.parquet",
    )
    qrels = pd.read_parquet(out / "qrels.parquet")
    assert qrels.to_dict("records") == [
        {"query_id": "10", "doc_id": "1", "relevance": 1, "split": "dev"}
    ]
