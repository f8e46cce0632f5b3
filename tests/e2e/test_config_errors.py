"""The config is validated against config/schema.yaml at start-up."""

from __future__ import annotations

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


def test_deprecated_key_still_works_with_a_warning(workflow):
    workflow.write_config("old.yaml", {"annotation": {"cache_dir": "results/cache/old-llm"}})
    proc = workflow.run("-n", config="old.yaml")
    assert "config key annotation.cache_dir is deprecated: use llm.cache_dir" in proc.stderr
    assert proc.stderr.count("annotation.cache_dir is deprecated") == 1
