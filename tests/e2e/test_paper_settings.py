"""The paper config's DAG against the paper's settings table (config/paper_settings.yaml).

The DAG is the one tests/e2e/test_submission_plan.py checks for SLURM (the session fixture
``paper_plan``: built once). Every planned job is read for what the paper fixes: the annotator
and its pool, each run's backbone, loss, sampling, schedule and curriculum parent, the
evaluation targets (found by the metrics files the DAG produces, whichever rule makes them),
the Hybrid Test, and the RAG targets with both generators.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import yaml
from conftest import PAPER, REPO

pytestmark = pytest.mark.e2e

SETTINGS = yaml.safe_load((REPO / "config" / "paper_settings.yaml").read_text())
EXP = f"results/{yaml.safe_load(PAPER.read_text())['experiment']}"
METRICS = re.compile(
    rf"^{EXP}/eval/(?P<run>[^/]+)/(?P<dataset>[^/.]+)\.(?P<split>[^/]+)\.metrics\.parquet$"
)
RAG_METRICS = re.compile(
    rf"^{EXP}/rag/(?P<run>[^/]+)/(?P<dataset>[^/.]+)\.(?P<split>[^/]+)\.metrics\.parquet$"
)


def jobs(plan, rule):
    return [job for job, _ in plan["all"] if job.rule.name == rule]


def by_run(plan, rule):
    return {job.wildcards.run: job for job in jobs(plan, rule)}


def produced(plan, pattern):
    """{(run, dataset, split): the job writing that metrics file}, whatever its rule."""
    out = {}
    for job, _ in plan["all"]:
        for path in map(str, job.output):
            match = pattern.match(path)
            if match:
                out[(match["run"], match["dataset"], match["split"])] = job
    return out


@pytest.fixture(scope="module")
def trained(paper_plan):
    return by_run(paper_plan, "train"), by_run(paper_plan, "build_trainset")


def test_annotation_uses_the_papers_annotator_pool_and_windows(paper_plan):
    paper = SETTINGS["annotation"]
    shards = jobs(paper_plan, "annotate_shard")
    assert shards
    for job in shards:
        assert job.params.model == paper["model"]
        assert job.params.strategies == paper["strategies"]
        assert job.params.window_size == paper["window_size"]
    (pools,) = jobs(paper_plan, "build_pools")
    assert pools.params.negatives == paper["negatives"] and pools.params.max_queries is None
    (report,) = jobs(paper_plan, "annotation_report")
    assert report.params.thresholds == paper["utilrank_thresholds"]


def test_every_run_of_the_paper_is_planned_and_nothing_else(trained):
    train, _ = trained
    paper = SETTINGS["training"]
    expected = {*paper["runs"], *paper["curriculum"], *paper["beyond_paper"]}
    assert set(train) == expected


@pytest.mark.parametrize("run", sorted(SETTINGS["training"]["runs"]))
def test_single_stage_runs_have_the_papers_loss_sampling_and_schedule(trained, run):
    train, trainsets = trained
    paper, row = SETTINGS["training"], SETTINGS["training"]["runs"][run]
    settings, labels = train[run].params.settings, trainsets[run].params.labels
    assert (settings["loss"], settings["positive_sampling"]) == (row["loss"], row["sampling"])
    for key in ("lr", "epochs", "batch_size", "group_size", "query_max_len"):
        assert settings[key] == paper[key], key
    assert settings["passage_max_len"] == paper["passage_max_len"]
    assert (settings["pooling"], settings["temperature"]) == (
        paper["pooling"],
        paper["temperature"],
    )
    assert train[run].params.world_size == paper["gpus"]
    assert settings["negatives_x_device"]
    assert labels["label_source"] == row.get("labels", "human")
    assert labels["utilrank_threshold"] == row.get("threshold")
    assert labels["human_positive"] == row.get("human_positive", "random")
    assert labels["union_ratio"] == row.get("union_ratio", 0.0)
    assert labels["query_ratio"] == 1.0
    backbone = paper["backbones"][row.get("backbone", "retromae")]
    init = str(train[run].input.init)
    assert init.endswith(backbone.replace("/", "--")) or backbone.split("/")[-1] in init, init


@pytest.mark.parametrize("run", sorted(SETTINGS["training"]["curriculum"]))
def test_curriculum_runs_continue_their_stage_one_on_human_labels(trained, run):
    train, trainsets = trained
    row, stage2 = SETTINGS["training"]["curriculum"][run], SETTINGS["training"]["curriculum_stage2"]
    settings, labels = train[run].params.settings, trainsets[run].params.labels
    assert str(train[run].input.init) == f"{EXP}/models/{row['from']}"
    assert labels["label_source"] == "human" and labels["query_ratio"] == row["ratio"]
    assert (settings["loss"], settings["positive_sampling"]) == (stage2["loss"], stage2["sampling"])
    assert (settings["epochs"], settings["lr"]) == (stage2["epochs"], stage2["lr"])
    parent = SETTINGS["training"]["runs"][row["from"]]
    # App. D.2: stage 1 is Pos-one (Table 10's "Pos-all (CL)" is the one Pos-all parent).
    assert parent["sampling"] == "pos_one" or run == "utilsel-posall-cl20"


def test_replug_runs_learn_from_answer_likelihoods_of_every_pool_shard(paper_plan, trained):
    _, trainsets = trained
    assert len(jobs(paper_plan, "replug_score")) == len(jobs(paper_plan, "annotate_shard"))
    replug = [r for r, row in SETTINGS["training"]["runs"].items() if row.get("labels") == "replug"]
    assert replug == ["replug", "contriever-replug"]
    for run in replug:
        assert trainsets[run].params.labels["label_source"] == "replug"
        inputs = {str(f) for f in trainsets[run].input}
        assert any("/replug/shard-" in f for f in inputs), inputs
    cl = [r for r, row in SETTINGS["training"]["curriculum"].items() if "replug" in row["from"]]
    assert sorted(cl) == sorted(
        ["replug-cl20", "replug-cl100", "contriever-replug-cl20", "contriever-replug-cl100"]
    )


def measures_of(job, dataset: str, split: str) -> list[str]:
    """The measures one run's evaluation job scores target (dataset, split) with."""
    (item,) = [e for e in job.params.evaluations if (e["dataset"], e["split"]) == (dataset, split)]
    return item["measures"]


def test_in_domain_targets_and_their_measures(paper_plan):
    metrics = produced(paper_plan, METRICS)
    runs = {run for run, _, _ in metrics}
    assert runs == {"bm25", "zeroshot", *by_run(paper_plan, "train")}
    for target, measures in SETTINGS["evaluation"]["in_domain"].items():
        dataset, split = target.split("/")
        for run in runs:
            job = metrics[(run, dataset, split)]
            assert set(measures) <= set(measures_of(job, dataset, split)), (run, target)


def test_fourteen_beir_evaluations_with_cqadupstack_one_averaged_entry(paper_plan):
    evaluation = SETTINGS["evaluation"]
    metrics = produced(paper_plan, METRICS)
    beir = defaultdict(set)
    forums = set()
    for (run, dataset, split), job in metrics.items():
        if dataset in evaluation["beir"]:
            beir[run].add(dataset)
            assert split == "test"
            if dataset == "cqadupstack":
                # the averaged entry is made from the 12 forums' own evaluations
                (item,) = [
                    e
                    for e in job.params.evaluations
                    if (e["dataset"], e["split"]) == (dataset, split)
                ]
                forums |= {f"/{d}." for d in item["subsets"]}
            else:
                assert evaluation["beir_measure"] in measures_of(job, dataset, split)
    assert len(evaluation["beir"]) == 14
    assert all(datasets == set(evaluation["beir"]) for datasets in beir.values())
    assert len(beir) == len({run for run, _, _ in metrics})  # every run, BM25 included
    assert len({re.sub(r".*/cqadupstack-([^.]+)\..*", r"\1", f) for f in forums}) == 12
    # BEIR results drop the query's own id (BEIR's evaluator, pyserini's --remove-query).
    for job in jobs(paper_plan, "dense_search"):
        if job.wildcards.dataset.split("-")[0] in {"arguana", "quora"}:
            assert job.params.remove_query, job


def test_the_hybrid_test_pools_four_runs_and_evaluates_every_run(paper_plan):
    hybrid = SETTINGS["evaluation"]["hybrid"]
    (pool,) = jobs(paper_plan, "hybrid_pool")
    assert pool.params.runs == hybrid["runs"]
    assert (pool.params.queries, pool.params.depth, pool.params.split) == (
        hybrid["queries"],
        hybrid["depth"],
        hybrid["split"],
    )
    assert len(jobs(paper_plan, "hybrid_judge")) == 1
    metrics = produced(paper_plan, METRICS)
    evaluated = {r for r, d, s in metrics if (d, s) == (hybrid["dataset"], "dev-hybrid")}
    assert evaluated == {run for run, _, _ in metrics}
    for (run, _, s), job in metrics.items():
        if s == "dev-hybrid":
            (item,) = [e for e in job.params.evaluations if e["run"] == run]
            assert item["measures"] == hybrid["measures"], run


def test_significance_against_human_and_replug(paper_plan):
    (job,) = jobs(paper_plan, "significance")
    paper = SETTINGS["evaluation"]["significance"]
    assert (job.params.baseline, job.params.alpha) == (paper["baseline"], paper["alpha"])
    assert paper["second_baseline"] in job.params.second_baselines


def test_rag_targets_top_k_and_both_generators(paper_plan):
    rag = SETTINGS["rag"]
    generate = jobs(paper_plan, "rag_generate")
    planned = sorted(
        (
            j.wildcards.dataset,
            j.params.target["split"],
            j.params.target["top_k"],
            j.params.generator["model"],
        )
        for j in generate
    )
    expected = sorted(
        (t["dataset"], t["split"], t["top_k"], model)
        for t in rag["targets"]
        for model in rag["generators"]
    )
    assert planned == expected
    for job in generate:
        assert job.params.generator["sampling"]["temperature"] == rag["temperature"]
        assert job.params.runs == rag["runs"]
    scores = produced(paper_plan, RAG_METRICS)
    targets = {(t["dataset"], t["top_k"]): t["measures"] for t in rag["targets"]}
    for (run, dataset, split), job in scores.items():
        assert run in rag["runs"]
        assert job.params.measures == targets[(dataset, job.params.top_k)], (dataset, split)
    assert len(scores) == len(rag["runs"]) * len(rag["targets"]) * len(rag["generators"])
