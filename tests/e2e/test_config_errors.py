"""The config is validated against config/schema.yaml at start-up; bad inputs fail the job
that reads them with a message naming the file, and leave no output behind."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_unknown_config_key(workflow):
    workflow.write_config("bad.yaml", {"bm25": {"k1": 0.9, "kay1": 1.0}})
    proc = workflow.run("-n", config="bad.yaml", check=False)
    assert proc.returncode != 0
    assert (
        "kay1" in proc.stdout + proc.stderr
        and "Additional properties are not allowed" in proc.stdout + proc.stderr
    )


def test_wrong_type(workflow):
    workflow.write_config("bad.yaml", {"pools": {"negatives": "thirty"}})
    proc = workflow.run("-n", config="bad.yaml", check=False)
    assert proc.returncode != 0
    assert "'thirty' is not of type 'integer'" in proc.stdout + proc.stderr


def test_bad_corpus_fails_the_job_and_writes_nothing(workflow, scifact_dir):
    data = workflow.add_dataset("scifact", scifact_dir)
    lines = (data / "corpus.jsonl").read_text().splitlines()
    lines[41] = lines[41][:-5]  # truncate line 42: no longer JSON
    (data / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    workflow.write_config("c.yaml", {"experiment": "bad"})
    proc = workflow.run("results/datasets/scifact/qrels.parquet", config="c.yaml", check=False)
    assert proc.returncode != 0
    assert "corpus.jsonl:42: not valid JSON" in proc.stderr + proc.stdout
    assert not (workflow.workdir / "results/datasets/scifact").exists() or not any(
        (workflow.workdir / "results/datasets/scifact").iterdir()
    )


def test_truncated_corpus_shard_fails_the_reading_job_naming_the_file(workflow):
    """A damaged ingested shard (an interrupted copy, a full disk) is named by the next stage,
    with the fix, and that stage writes nothing."""
    data = workflow.workdir / "resources" / "datasets" / "tiny"
    (data / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"passage {i}"} for i in range(3)]
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "passage"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    workflow.write_config("c.yaml", {"experiment": "bad", "datasets": {"tiny": {"format": "beir"}}})
    workflow.run("results/datasets/tiny/qrels.parquet", config="c.yaml")
    shard = workflow.workdir / "results/datasets/tiny/corpus/shard-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    index = "results/indexes/tiny.bm25-flat"
    proc = workflow.run(index, config="c.yaml", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"{shard.relative_to(workflow.workdir)}: not a readable Parquet file" in out
    assert "delete it and rerun Snakemake" in out
    indexes = workflow.workdir / "results/indexes"
    assert not indexes.exists() or not list(indexes.iterdir())  # no index, no temp dir


def test_deprecated_key_still_works_with_a_warning(workflow):
    workflow.write_config("old.yaml", {"annotation": {"cache_dir": "results/cache/old-llm"}})
    proc = workflow.run("-n", config="old.yaml")
    assert "config key annotation.cache_dir is deprecated: use llm.cache_dir" in proc.stderr
    assert proc.stderr.count("annotation.cache_dir is deprecated") == 1
