"""Ingestion validates its input and never leaves half-written output behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from utilann.datasets import DatasetError, ingest, read_corpus
from utilann.dense import corpus_slice
from utilann.io import CorruptArtifactError, read_table


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
    assert counts == {
        "documents": 3,
        "queries": 2,
        "empty_documents": 0,
        "repeated_qrels_dropped": 0,
        "qrels": 2,
    }
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
    with pytest.raises(
        DatasetError, match=r"qrels/test\.tsv:3: unknown document 'nope' \(query 'q2'\)"
    ):
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
    assert (counts["documents"], counts["queries"], counts["qrels"]) == (3, 1, 1)
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


# --- issue 14: every bad input names its file and line (or id); nothing is written ---------


def test_non_utf8_byte_names_file_line_and_offset(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1"])
    first = doc("d1").encode()
    broken = b'{"_id": "d2", "title": "", "text": "caf\xe9"}'  # latin-1, not UTF-8
    (src / "corpus.jsonl").write_bytes(first + b"\n" + broken + b"\n")
    offset = len(first) + 1 + broken.index(b"\xe9")
    with pytest.raises(
        DatasetError, match=rf"corpus\.jsonl:2: byte 0xe9 at byte offset {offset} of the file"
    ):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_empty_corpus_says_no_documents(tmp_path):
    src = write_beir(tmp_path / "src", [], ["q1\td1\t1"])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl: no documents in the file"):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_empty_documents_are_kept_counted_and_warned(tmp_path, caplog):
    empty = json.dumps({"_id": "d2", "title": "", "text": ""})
    src = write_beir(tmp_path / "src", [doc("d1"), empty], ["q1\td1\t1", "q2\td2\t1"])
    with caplog.at_level("WARNING", logger="utilann.datasets"):
        counts = run_ingest(src, tmp_path / "out")
    assert counts["documents"] == 2 and counts["empty_documents"] == 1
    assert "1 document(s) with an empty title and text, kept (e.g. 'd2' at " in caplog.text
    assert "corpus.jsonl:2" in caplog.text
    corpus = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "out/corpus").glob("*")))
    assert "d2" in set(corpus["doc_id"])


def test_qrels_naming_unknown_query_names_the_line(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1", "q9\td1\t1"])
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv:3: unknown query 'q9'"):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_ids_differing_by_leading_zeros_are_different_and_said_so(tmp_path):
    src = write_beir(tmp_path / "src", [doc("7")], ["q1\t07\t1"])
    with pytest.raises(
        DatasetError,
        match=r"test\.tsv:2: unknown document '07' .*there is '7': ids are compared as strings",
    ):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_query_ids_colliding_after_string_conversion(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1"])
    lines = [json.dumps({"_id": "1", "text": "one"}), json.dumps({"_id": 1, "text": "uno"})]
    (src / "queries.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetError,
        match=r"queries\.jsonl:2: duplicate query id '1' \(first seen at .*queries\.jsonl:1\); "
        r"ids are compared as strings",
    ):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_qrels_pair_judged_twice_with_different_grades(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1", "q1\td1\t2"])
    with pytest.raises(
        DatasetError,
        match=r"test\.tsv:3: query 'q1' and document 'd1' are judged 2, but 1 at .*test\.tsv:2",
    ):
        run_ingest(src, tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_qrels_exact_repetition_is_dropped_and_counted(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1")], ["q1\td1\t1", "q1\td1\t1"])
    counts = run_ingest(src, tmp_path / "out")
    assert counts["qrels"] == 1 and counts["repeated_qrels_dropped"] == 1
    assert len(pd.read_parquet(tmp_path / "out/qrels.parquet")) == 1


def test_tevatron_line_without_positives(tmp_path):
    src = tmp_path / "tev"
    src.mkdir()
    good = {"query_id": "7", "query": "q", "positive_passages": [{"docid": "p", "text": "t"}]}
    bad = {"query_id": "8", "query": "q", "positive_passages": [], "negative_passages": []}
    (src / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"train\.jsonl:2: query '8' has no positive_passages"):
        ingest(src, "tevatron", out / "c", out / "q", out / "r", 10, out / "a", out / "n")
    assert_nothing_written(out)


def test_bom_and_crlf_are_accepted(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1"), doc("d2")], ["q1\td1\t1", "q2\td2\t1"])
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        path = src / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    counts = run_ingest(src, tmp_path / "out")
    assert (counts["documents"], counts["queries"], counts["qrels"]) == (2, 2, 2)
    queries = pd.read_parquet(tmp_path / "out/queries.parquet")
    assert list(queries["query_id"]) == ["q1", "q2"] and list(queries["text"])[1] == "what is y"


def test_msmarco_crlf_is_accepted_and_a_tab_inside_a_passage_is_an_error(tmp_path):
    src = tmp_path / "mm"
    src.mkdir()
    (src / "collection.tsv").write_bytes(b"0\tfirst passage\r\n1\tsecond passage\r\n")
    (src / "queries.dev.tsv").write_bytes(b"10\twhat first\r\n")
    (src / "qrels.dev.tsv").write_bytes(b"10 0 1 1\r\n")
    out = tmp_path / "out"
    ingest(
        src, "msmarco", out / "c", out / "q.parquet", out / "r.parquet", 10, out / "a", out / "n"
    )
    corpus = pd.read_parquet(next((out / "c").glob("*.parquet")))
    assert list(corpus["text"]) == ["first passage", "second passage"]
    shutil.rmtree(out)
    (src / "collection.tsv").write_text("0\tfirst passage\n1\tsecond\tpassage\n")
    with pytest.raises(
        DatasetError,
        match=r"collection\.tsv:2: expected 2 tab-separated columns \(pid, text\), got 3",
    ):
        ingest(src, "msmarco", out / "c", out / "q", out / "r", 10, out / "a", out / "n")
    assert_nothing_written(out)


def test_truncated_parquet_shard_is_named_with_the_fix(tmp_path):
    src = write_beir(tmp_path / "src", [doc("d1"), doc("d2"), doc("d3")], ["q1\td1\t1"])
    out = tmp_path / "out"
    run_ingest(src, out)
    shard = out / "corpus" / "shard-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-20])  # cut short, like an interrupted copy
    fix = r"not a readable Parquet file .*delete it and rerun Snakemake"
    with pytest.raises(CorruptArtifactError, match=rf"shard-00001\.parquet: {fix}"):
        read_corpus(out / "corpus")
    with pytest.raises(CorruptArtifactError, match=r"shard-00001\.parquet: not a readable"):
        corpus_slice(out / "corpus", 0, 1)
    (out / "qrels.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptArtifactError, match=r"qrels\.parquet: not a readable"):
        read_table(out / "qrels.parquet")
    with pytest.raises(FileNotFoundError):  # missing is not corrupt
        read_table(out / "absent.parquet")


def test_a_benchmark_archive_unpacks_to_the_folder_of_its_subsets(tmp_path):
    from utilann.datasets import _beir_root

    for forum in ("android", "gis"):
        (tmp_path / "cqadupstack" / forum).mkdir(parents=True)
        (tmp_path / "cqadupstack" / forum / "corpus.jsonl").write_text("{}\n")
    assert _beir_root(tmp_path, ["android", "gis"]) == tmp_path / "cqadupstack"
    assert _beir_root(tmp_path, []) == tmp_path / "cqadupstack" / "android"
    assert _beir_root(tmp_path, ["android", "tex"]) is None
