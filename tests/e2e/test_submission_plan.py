"""What `snakemake --profile slurm` would submit for the paper config, GPU job by GPU job.

The DAG of config/experiments/msmarco-paper.yaml is built with the profile (parsed by
Snakemake's own CLI), and every GPU job's sbatch line is made by snakemake-executor-plugin-
slurm's own code (get_submit_command, set_gres_string, partition choice from the example
partition file): nothing is submitted, no SLURM is needed. Each line is checked against the
settings of what the job starts: vLLM over tensor_parallel_size GPUs, torchrun with one rank
per GPU, one GPU per encoding/search job, a CPU per worker, memory and time from the config.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import CPU_RULES, GPU_RULES, PAPER, sbatch_options, submission_plan

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER.read_text())


@pytest.fixture(scope="module")
def plan(paper_plan):
    return paper_plan


def test_every_gpu_rule_of_the_paper_config_is_planned(plan):
    assert set(plan) == GPU_RULES | CPU_RULES | {"local", "all"}
    counts = {rule: len(jobs) for rule, jobs in plan.items() if rule in GPU_RULES}
    # 64 annotation shards, each also scored for REPLUG; one Hybrid-Test judge; 4 RAG targets
    # (MS MARCO QA top 1 and top 5, NQ, HotpotQA) x 2 generators; 48 trained runs (+ zero-shot)
    # x the encode shards of every corpus (MS MARCO 8, the large BEIR corpora 3-5 each: 30)
    # + 20 one-shard corpora (8 BEIR, CQADupStack's 12 forums); every run searched on 28 splits
    # (MS MARCO dev/DL19/DL20, 13 BEIR, 12 CQADupStack forums).
    assert counts == {
        "annotate_shard": 64,
        "replug_score": 64,
        "rag_generate": 4 * 2,
        "hybrid_judge": 1,
        "train": 48,
        "encode_corpus": 49 * (30 + 20),
        "dense_search": 49 * 28,
    }


def test_vllm_jobs_get_tensor_parallel_gpus_and_a_cpu_per_worker(plan, paper):
    tp = paper["llm"]["engine"]["tensor_parallel_size"]
    for rule, where in (
        ("annotate_shard", paper["annotation"]["resources"]),
        ("replug_score", paper["replug"]["resources"]),
        ("rag_generate", paper["rag"]["generator"]["resources"]),
    ):
        for _, line in plan[rule]:
            opts = sbatch_options(line)
            gpus = opts["--gpus"].split(":")[-1]  # a100:8 where a GPU model is set
            assert int(gpus) == tp == where["gpu"], line
            assert int(opts["--cpus-per-task"]) == where["cpus"] >= tp, line
            assert int(opts["--mem"]) == where["mem_mb"], line
            assert int(opts["-t"]) == where["runtime"], line
            assert opts["-p"] == "gpu", line
            assert "--ntasks" not in line  # one task: vLLM starts its own workers
    assert all(sbatch_options(line)["--gpus"] == "a100:8" for _, line in plan["annotate_shard"])


def test_the_hybrid_judge_job_evaluates_every_run_on_its_labels(plan, paper):
    # Group "hybrid": the judge (vLLM over tensor_parallel_size GPUs) and, once its golden
    # qrels are written, the evaluation of every run on them, in one job.
    res = paper["evaluation"]["hybrid"]["judge"]["resources"]
    tp = paper["llm"]["engine"]["tensor_parallel_size"]
    ((_, line),) = plan["hybrid_judge"]
    assert "--comment rule_hybrid_evaluate_hybrid_hybrid_judge " in line
    opts = sbatch_options(line)
    assert int(opts["--gpus"]) == tp == res["gpu"], line
    assert int(opts["--mem"]) == res["mem_mb"] and opts["-p"] == "gpu", line
    assert int(opts["-t"]) == res["runtime"] + 30, line  # the evaluations' 30 min after it
    assert int(opts["--cpus-per-task"]) >= res["cpus"] >= tp, line
    local = {job.rule.name for job, _ in plan["local"]}
    assert "evaluate_hybrid" not in local


def test_training_jobs_run_one_torchrun_rank_per_gpu(plan, paper):
    res = paper["training"]["resources"]
    for job, line in plan["train"]:
        opts = sbatch_options(line)
        assert int(opts["--gpus"]) == res["gpu"] == job.params.world_size, line
        assert int(opts["--cpus-per-task"]) == res["cpus"] >= job.params.world_size
        assert (int(opts["--mem"]), int(opts["-t"])) == (res["mem_mb"], res["runtime"])
        assert opts["-p"] == "gpu"


def test_encoding_and_search_use_one_gpu_each(plan, paper):
    res = paper["dense"]["resources"]
    for rule in ("encode_corpus", "dense_search"):
        for _, line in plan[rule]:
            opts = sbatch_options(line)
            assert (int(opts["--gpus"]), int(opts["--cpus-per-task"])) == (1, res["cpus"])
            assert int(opts["--mem"]) == res["mem_mb"] and opts["-p"] == "gpu"
            assert int(opts["-t"]) == res["runtime"], line
            assert f"--comment rule_{rule} " in line  # a job of its own, no group


def test_each_run_is_evaluated_by_one_cpu_job_on_every_target(plan, paper):
    # One job per retrieval run (bm25 + 48 trained + zero-shot), on the CPU partition, scoring
    # the 16 plain targets and CQADupStack's 12 forums, then the forums' mean; the Hybrid Test
    # is scored in the judge's job (above).
    targets = paper["evaluation"]["targets"]
    forums = len(paper["datasets"]["cqadupstack"]["subsets"])
    assert len(plan["evaluate_run"]) == 50
    for job, line in plan["evaluate_run"]:
        opts = sbatch_options(line)
        assert "--gpus" not in opts and opts["-p"] == "cpu", line
        assert (int(opts["--cpus-per-task"]), int(opts["--mem"]), int(opts["-t"])) == (1, 4000, 60)
        assert len(job.output) == 2 * (len(targets) + forums)
        mean = f"eval/{job.wildcards.run}/cqadupstack.test.metrics.parquet"
        assert any(str(f).endswith(mean) for f in job.output), job.output


def test_downloads_and_tiny_jobs_run_locally_and_hub_models_come_first(plan):
    local = {job.rule.name for job, _ in plan["local"]}
    assert local == {
        "download_dataset",
        "split_dataset",
        "missing_answers",
        "fetch_model",
        "prepare_encoder",
        "hybrid_pool",
        "metrics_table",
        "check_reproduction",
        "significance",
        # not rag_score: MS MARCO QA's BERTScore (a model over every answer) makes it a job
        "report_tables",
        "plot_utilrank_threshold",
        "plot_human_ratio",
        "all",
    }
    qwen = "resources/models/hub/Qwen--Qwen2.5-32B-Instruct-GPTQ-Int8"
    llama = "resources/models/hub/meta-llama--Llama-3.1-8B-Instruct"
    fetched = {
        str(f) for job, _ in plan["local"] if job.rule.name == "fetch_model" for f in job.output
    }
    # Each once: Qwen for 64 annotation + 64 REPLUG jobs, 4 RAG jobs and the judge; Llama for
    # the other 4 RAG jobs.
    assert fetched == {qwen, llama}
    for rule in ("annotate_shard", "replug_score", "hybrid_judge"):
        assert all(qwen in map(str, job.input) for job, _ in plan[rule])
    generators = sorted(
        next(str(f) for f in job.input if "/hub/" in str(f)) for job, _ in plan["rag_generate"]
    )
    assert generators == sorted([llama] * 4 + [qwen] * 4)


def test_a_gpu_count_that_does_not_match_the_engine_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"annotation": {"resources": {"gpu": 4}}}))
    with pytest.raises(Exception, match="annotation.resources.gpu is 4 but llm.engine has"):
        submission_plan(tmp_path / "wd", configfiles=(PAPER, bad))


def test_query_generation_jobs_get_the_engines_gpus(tmp_path, paper):
    """The paper config in the new-corpus mode: one vLLM job per query-generation shard."""
    overlay = tmp_path / "newcorpus.yaml"
    resources = {"gpu": 8, "cpus": 32, "mem_mb": 256000, "runtime": 120}
    overlay.write_text(
        yaml.safe_dump(
            {
                "train": {"dataset": paper["train"]["dataset"], "split": "generated"},
                "newcorpus": {
                    "enabled": True,
                    "shards": 4,
                    "examples": {"written": [{"passage": "a passage", "query": "a query"}]},
                    "resources": resources,
                },
            }
        )
    )
    plan = submission_plan(tmp_path / "wd", configfiles=(PAPER, overlay))
    assert len(plan["querygen_shard"]) == 4
    for _, line in plan["querygen_shard"]:
        opts = sbatch_options(line)
        assert int(opts["--gpus"]) == paper["llm"]["engine"]["tensor_parallel_size"], line
        assert int(opts["--cpus-per-task"]) == resources["cpus"], line
        assert int(opts["--mem"]) == resources["mem_mb"] and int(opts["-t"]) == 120, line
        assert opts["-p"] == "gpu", line
