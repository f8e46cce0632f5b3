"""The ``utilann inspect`` views on small artifacts written with utilann.io.write_table, and
``utilann cache`` / ``utilann clean`` (what ``make clean`` and ``make clean-cache`` run)."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from utilann import schemas
from utilann.cli import main
from utilann.io import write_table

WIDE = ["--width", "250"]


def build_pools(exp: Path) -> None:
    pool = pd.DataFrame(
        {
            "query_id": ["q1"] * 3 + ["q2"],
            "query": ["what is utility"] * 3 + ["other"],
            "position": [0, 1, 2, 0],
            "doc_id": ["d1", "d2", "d3", "d9"],
            "title": ["", "", "", ""],
            "text": ["human positive passage", "a hard negative", "another negative", "x"],
            "is_human_positive": [True, False, False, True],
            "source": ["human", "bm25", "bm25", "human"],
            "source_rank": [0, 1, 2, 0],
        }
    )
    write_table(pool, exp / "pools" / "shard-0.parquet", schemas.POOLS, {"negatives": 2})


def build_everything(results: Path) -> Path:
    exp = results / "demo"
    build_pools(exp)
    labels = pd.DataFrame(
        {
            "query_id": ["q1"] * 9,
            "doc_id": ["d1", "d2", "d3"] * 3,
            "position": [0, 1, 2] * 3,
            "is_human_positive": [True, False, False] * 3,
            "strategy": ["relsel"] * 3 + ["utilsel"] * 3 + ["utilrank"] * 3,
            "selected": [True, True, False, True, False, False, True, True, False],
            "rank": [None] * 6 + [1, 2, None],
            "list_length": [None] * 6 + [2, 2, None],
        }
    )
    write_table(labels, exp / "annotation" / "labels.parquet", schemas.LABELS, {"model": "smollm2"})
    raw = pd.DataFrame(
        {
            "query_id": ["q1", "q1"],
            "step": ["relsel", "utilsel"],
            "output": ["My selection: [1],[2].", "My selection: [1]."],
        }
    )
    write_table(raw, exp / "annotation" / "shard-0" / "raw.parquet")
    run = pd.DataFrame(
        {
            "query_id": ["t1", "t1", "t1"],
            "doc_id": ["e2", "e1", "e3"],
            "rank": [1, 2, 3],
            "score": [3.0, 2.0, 1.0],
        }
    )
    write_table(
        run, exp / "runs" / "bm25" / "scifact.test.parquet", schemas.RUN, {"k1": 0.9, "b": 0.4}
    )
    qrels = pd.DataFrame(
        {"query_id": ["t1"], "doc_id": ["e1"], "relevance": [1], "split": ["test"]}
    )
    write_table(qrels, results / "datasets" / "scifact" / "qrels.parquet", schemas.QRELS)
    queries = pd.DataFrame({"query_id": ["t1"], "text": ["does aspirin help"]})
    write_table(queries, results / "datasets" / "scifact" / "queries.parquet", schemas.QUERIES)
    per_query = pd.DataFrame(
        {"query_id": ["t1", "t1"], "measure": ["nDCG@10", "RR@10"], "value": [0.6309, 0.5]}
    )
    write_table(
        per_query, exp / "eval" / "bm25" / "scifact.test.perquery.parquet", schemas.PER_QUERY
    )
    generations = pd.DataFrame(
        {
            "query_id": ["t1"],
            "doc_ids": [["e2"]],
            "prediction": ["Aspirin helps."],
            "raw_output": ["Aspirin helps."],
            "prompt_key": ["abc"],
        }
    )
    write_table(
        generations, exp / "rag" / "bm25" / "scifact.test.generations.parquet", schemas.GENERATIONS
    )
    (exp / "runs" / "bm25" / "scifact.test.trec").write_text("t1 Q0 e2 1 3.0 bm25\n")
    return exp


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main([*WIDE, *argv])
    return code, capsys.readouterr().out


def test_list_shows_every_artifact_with_its_schema(tmp_path, capsys):
    build_everything(tmp_path)
    code, out = run_cli(
        capsys, "inspect", "list", "--results", str(tmp_path), "--experiment", "demo"
    )
    assert code == 0
    for expected in [
        "POOLS",
        "pools/shard-*.parquet",
        "LABELS",
        "annotation/labels.parquet",
        "runs/bm25/scifact.test.parquet",
        "RUN",
        "PER_QUERY",
        "GENERATIONS",
        "runs/bm25/scifact.test.trec",
        "trec",
    ]:
        assert expected in out
    assert "not built yet" not in out


def test_list_says_which_stages_are_missing(tmp_path, capsys):
    build_pools(tmp_path / "demo")
    code, out = run_cli(capsys, "inspect", "list", "--results", str(tmp_path))
    assert code == 0
    assert "not built yet: annotation, runs, eval, rag" in out


def test_list_unknown_experiment(tmp_path, capsys):
    code, out = run_cli(
        capsys, "inspect", "list", "--results", str(tmp_path), "--experiment", "nope"
    )
    assert code == 1 and "no results for experiment 'nope'" in out


def test_schema_shows_columns_and_metadata(tmp_path, capsys):
    exp = build_everything(tmp_path)
    code, out = run_cli(
        capsys, "inspect", "schema", str(exp / "runs" / "bm25" / "scifact.test.parquet")
    )
    assert code == 0
    assert "3 rows" in out and "utilann schema: RUN" in out
    for column in ["query_id", "doc_id", "rank", "score", "int32", "float"]:
        assert column in out
    assert '"k1": 0.9' in out


def test_schema_of_a_foreign_file_and_of_a_missing_one(tmp_path, capsys):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    code, out = run_cli(capsys, "inspect", "schema", str(tmp_path / "x.parquet"))
    assert code == 0 and "none matches" in out and "no utilann metadata" in out
    code, out = run_cli(capsys, "inspect", "schema", str(tmp_path / "missing.parquet"))
    assert code == 1 and "no Parquet file" in out


def test_schema_of_a_shard_directory(tmp_path, capsys):
    exp = build_everything(tmp_path)
    code, out = run_cli(capsys, "inspect", "schema", str(exp / "pools"))
    assert code == 0 and "4 rows in 1 file(s)" in out and "POOLS" in out


def test_query_of_a_training_query_shows_pool_labels_and_raw_output(tmp_path, capsys):
    build_everything(tmp_path)
    code, out = run_cli(capsys, "inspect", "query", "q1", "--results", str(tmp_path))
    assert code == 0
    assert "what is utility" in out
    assert "human positive passage" in out
    assert "relsel" in out and "utilsel" in out and "utilrank" in out
    assert "1/2" in out and "2/2" in out
    assert "My selection: [1],[2]." in out
    assert "runs: query not in" in out  # q1 is a training query: no run has it


def test_query_of_an_evaluation_query_shows_runs_answers_and_metrics(tmp_path, capsys):
    build_everything(tmp_path)
    code, out = run_cli(capsys, "inspect", "query", "t1", "--results", str(tmp_path), "--top", "2")
    assert code == 0
    assert "does aspirin help" in out
    assert "run bm25 on scifact.test (top 2 of 3)" in out
    assert "e2" in out and "e1" in out and "e3" not in out
    assert "relevance" in out
    assert "Aspirin helps." in out
    assert "nDCG@10" in out and "0.6309" in out
    assert "pool: query not in" in out and "LLM labels: query not in" in out


def test_query_with_only_pools_says_what_is_missing(tmp_path, capsys):
    build_pools(tmp_path / "demo")
    code, out = run_cli(capsys, "inspect", "query", "q1", "--results", str(tmp_path))
    assert code == 0
    for missing in [
        "LLM labels: not built",
        "raw LLM outputs: not built",
        "runs: not built",
        "RAG answers: not built",
        "per-query metrics: not built",
    ]:
        assert missing in out


def test_long_text_is_truncated_unless_asked(tmp_path, capsys):
    exp = tmp_path / "demo"
    build_pools(exp)
    raw = pd.DataFrame({"query_id": ["q1"], "output": ["word " * 100]})
    write_table(raw, exp / "annotation" / "shard-0" / "raw.parquet")
    _, short = run_cli(
        capsys, "inspect", "query", "q1", "--results", str(tmp_path), "--max-chars", "20"
    )
    _, full = run_cli(
        capsys, "inspect", "query", "q1", "--results", str(tmp_path), "--max-chars", "0"
    )
    assert "…" in short and full.count("word") >= 100


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["inspect"])
    assert excinfo.value.code == 2


# --- cache and clean (make clean / make clean-cache) ----------------------------------------


def write_cache_file(path: Path, n: int) -> None:
    """A writer's file in the LLM cache's format (one SQLite table of generations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE generations (key TEXT PRIMARY KEY, text TEXT)")
        conn.executemany("INSERT INTO generations VALUES (?, ?)", [(str(i), "x") for i in range(n)])
    conn.close()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with the repository's config, a cache inside results/, outputs."""
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "schema.yaml"):
        shutil.copy(REPO / "config" / name, tmp_path / "config" / name)
    write_cache_file(tmp_path / "results/cache/llm/demo.shard-0.sqlite", 3)
    write_cache_file(tmp_path / "results/cache/llm/rag.demo.sqlite", 2)
    build_pools(tmp_path / "results" / "demo")
    (tmp_path / "results/demo/train/human/resume/step-000000005").mkdir(parents=True)
    (tmp_path / "results/cache/other.txt").write_text("not the LLM cache")
    (tmp_path / ".snakemake/metadata").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cache_info_names_path_size_and_generations(workdir, capsys):
    assert main([*WIDE, "cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "LLM cache results/cache/llm" in out
    assert "demo.shard-0.sqlite" in out and "rag.demo.sqlite" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert total.split()[-2] == "5" and "KiB" in total


def test_cache_dir_comes_from_llm_or_the_deprecated_annotation_key(workdir, capsys):
    overlay = workdir / "elsewhere.yaml"
    overlay.write_text("annotation: {cache_dir: /tmp/nowhere-cache}\n")
    assert main([*WIDE, "cache", "info", "--configfile", str(overlay)]) == 0
    assert "/tmp/nowhere-cache: empty or absent" in capsys.readouterr().out
    overlay.write_text("llm: {cache_dir: other/llm}\n")
    write_cache_file(workdir / "other/llm/x.sqlite", 4)
    assert main([*WIDE, "cache", "info", "--configfile", str(overlay)]) == 0
    assert "LLM cache other/llm" in capsys.readouterr().out


def test_cache_clear_needs_confirmation(workdir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no prompt
    assert main([*WIDE, "cache", "clear"]) == 2
    assert "confirm with --yes" in capsys.readouterr().out
    assert (workdir / "results/cache/llm/demo.shard-0.sqlite").exists()
    assert main([*WIDE, "cache", "clear", "--yes"]) == 0
    assert "deleted results/cache/llm" in capsys.readouterr().out
    assert not (workdir / "results/cache/llm").exists()


def test_clean_keeps_only_the_llm_cache(workdir, capsys):
    assert main([*WIDE, "clean"]) == 0
    out = capsys.readouterr().out
    assert "kept the LLM cache results/cache/llm" in out
    assert sorted(p.name for p in (workdir / "results/cache/llm").iterdir()) == [
        "demo.shard-0.sqlite",
        "rag.demo.sqlite",
    ]
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["cache"]
    assert [p.name for p in (workdir / "results/cache").iterdir()] == ["llm"]
    assert not (workdir / ".snakemake").exists()


def test_remove_tree_except(tmp_path):
    from utilann.workspace import remove_tree_except

    (tmp_path / "r/a/keep").mkdir(parents=True)
    (tmp_path / "r/a/drop.txt").write_text("x")
    (tmp_path / "r/b").mkdir()
    assert remove_tree_except(tmp_path / "r", tmp_path / "r") == []
    removed = remove_tree_except(tmp_path / "r", tmp_path / "r/a/keep")
    assert sorted(p.name for p in removed) == ["b", "drop.txt"]
    assert (tmp_path / "r/a/keep").is_dir()
    assert remove_tree_except(tmp_path / "r", tmp_path / "elsewhere") == [
        (tmp_path / "r").resolve()
    ]
    assert not (tmp_path / "r").exists()
