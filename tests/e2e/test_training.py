"""End-to-end: pools -> training sets -> trained/zero-shot dense runs -> evaluation, on a small
real slice of SciFact, and the rerun behaviour of the training and dense rules.

The slice (32 train queries, 30 test queries, their judged abstracts plus 150 others) keeps the
whole module to a few minutes of CPU on 2 cores. ``relsel`` is left out of the runs built: it
takes the same path as ``utilsel`` (its label derivation is unit-tested). LLM labels are a
small LABELS table written from the real pools (the annotation stage needs an LLM); the
annotation rules are then excluded with ``--allowed-rules`` so that Snakemake treats the table
as given. The published-figure checks on
the full SciFact are in ``test_training_scifact.py``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from conftest import REPO, WORKFLOW_ENV, Workflow, planned_jobs, wait_for
from safetensors.torch import load_file

from utilann import schemas
from utilann.hardware import detect, resolve_precision
from utilann.io import read_metadata, write_table

pytestmark = pytest.mark.e2e

EXP = "results/mini"
RUNS = ["zeroshot", "human", "utilsel", "utilrank", "utilsel-cl50"]
N_TRAIN, N_TEST = 32, 30
EMPTY_UTILSEL_EVERY = 5  # every 5th pool query gets no UtilSel positive: dropped in training
CONFIG = {
    "experiment": "mini",
    "datasets": {"scifact": {"format": "beir"}},
    "corpus": {"shard_size": 200},
    "train": {"dataset": "scifact", "split": "train"},
    "evaluation": {"targets": [{"dataset": "scifact", "split": "test"}]},
    "pools": {"negatives": 15, "max_queries": None, "seed": 0, "shards": 2},
    "training": {
        "zeroshot": True,
        "defaults": {
            "epochs": 1,
            "batch_size": 8,
            "group_size": 4,
            "passage_max_len": 64,
            "empty_policy": "drop",  # the paper config's (the demo falls back to human)
        },
        # merged with the demo's human/relsel/utilsel/utilrank runs
        "runs": {
            "utilsel-cl50": {
                "init_from": "utilsel",
                "label_source": "human",
                "query_ratio": 0.5,
                "loss": "SingleLH",
                "positive_sampling": "single",
            },
        },
    },
    "dense": {"encode_shards": 2, "batch_size": 32, "query_max_len": 32, "passage_max_len": 128},
}
TARGETS = [f"{EXP}/eval/{run}/scifact.test.metrics.parquet" for run in RUNS]


def write_mini_scifact(source, dest, n_random: int = 150) -> int:
    """A BEIR folder: the first train/test queries, their judged docs + random others."""
    dest.mkdir(parents=True)
    (dest / "qrels").mkdir()
    keep_docs: set[str] = set()
    keep_queries: set[str] = set()
    for split, n_queries in (("train", N_TRAIN), ("test", N_TEST)):
        qrels = pd.read_csv(source / "qrels" / f"{split}.tsv", sep="\t", dtype=str)
        ids = sorted(qrels["query-id"].unique())[:n_queries]
        qrels = qrels[qrels["query-id"].isin(ids)]
        qrels.to_csv(dest / "qrels" / f"{split}.tsv", sep="\t", index=False)
        keep_queries |= set(ids)
        keep_docs |= set(qrels["corpus-id"])
    lines = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    extra = {json.loads(lines[i])["_id"] for i in rng.choice(len(lines), n_random, replace=False)}
    kept = [line for line in lines if json.loads(line)["_id"] in keep_docs | extra]
    (dest / "corpus.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    queries = [
        line
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in keep_queries
    ]
    (dest / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    return len(kept)


def write_labels_from_pools(workdir) -> pd.DataFrame:
    """A LABELS table over the real pools: RelSel picks the human positive and two negatives,
    UtilSel the human positive and one negative (nothing for every 5th query), UtilRank ranks
    RelSel's three passages."""
    pools = pd.concat(
        [pd.read_parquet(p) for p in sorted((workdir / EXP / "pools").glob("shard-*.parquet"))]
    )
    rows = []
    for i, (qid, group) in enumerate(pools.groupby("query_id", sort=True)):
        group = group.sort_values("position")
        human = group.loc[group["is_human_positive"], "doc_id"].iloc[0]
        negatives = list(group.loc[~group["is_human_positive"], "doc_id"])
        relsel = [human, negatives[0], negatives[1]]
        utilsel = set() if i % EMPTY_UTILSEL_EVERY == 0 else {human, negatives[0]}
        ranks = {negatives[0]: 1, human: 2, negatives[1]: 3}
        for r in group.itertuples():
            common = (qid, r.doc_id, r.position, r.is_human_positive)
            rows.append((*common, "relsel", r.doc_id in relsel, None, None))
            rows.append((*common, "utilsel", r.doc_id in utilsel, None, None))
            rows.append((*common, "utilrank", r.doc_id in ranks, ranks.get(r.doc_id), len(relsel)))
    labels = pd.DataFrame(rows, columns=schemas.LABELS.names)
    write_table(
        labels,
        workdir / EXP / "annotation" / "labels.parquet",
        schemas.LABELS,
        {"note": "synthetic labels for the training e2e test"},
    )
    return labels


def non_annotation_rules() -> list[str]:
    """Every rule of the workflow except the annotation stage's (which would need an LLM)."""
    names = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        if smk.name != "annotate.smk":
            names += re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), re.M)
    return names


class TrainingWorkflow(Workflow):
    """Runs with the annotation rules excluded (the labels table is given)."""

    def run(self, *args, **kwargs):
        # targets first: --allowed-rules takes every value up to the next option
        return super().run(*args, "--allowed-rules", *non_annotation_rules(), **kwargs)


@pytest.fixture(scope="module")
def wf(tmp_path_factory, scifact_dir) -> TrainingWorkflow:
    wf = TrainingWorkflow(tmp_path_factory.mktemp("training"))
    n_docs = write_mini_scifact(scifact_dir, wf.workdir / "resources" / "datasets" / "scifact")
    wf.n_docs = n_docs
    wf.write_config("config.yaml", CONFIG)
    wf.run(*[f"{EXP}/pools/shard-{i}.parquet" for i in range(2)], config="config.yaml")
    wf.labels = write_labels_from_pools(wf.workdir)
    wf.run(*TARGETS, config="config.yaml")
    return wf


def test_every_dense_run_is_written_and_evaluated(wf):
    for run in RUNS:
        table = pd.read_parquet(wf.workdir / EXP / "runs" / run / "scifact.test.parquet")
        assert list(table.columns) == schemas.RUN.names
        assert table["query_id"].nunique() == N_TEST
        per_query = table.groupby("query_id")
        assert (per_query.size() == wf.n_docs).all()  # depth 1000 > corpus: everything ranked
        assert (per_query["rank"].min() == 1).all()
        assert (per_query["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
        trec = (wf.workdir / EXP / "runs" / run / "scifact.test.trec").read_text().splitlines()
        assert len(trec) == len(table) and trec[0].split()[-1] == run
        metrics = pd.read_parquet(wf.workdir / EXP / "eval" / run / "scifact.test.metrics.parquet")
        ndcg = metrics.loc[metrics["measure"] == "nDCG@10", "value"].item()
        assert 0.2 < ndcg <= 1.0, (run, ndcg)


def test_training_changes_the_encoder(wf):
    zs = pd.read_parquet(wf.workdir / EXP / "runs/zeroshot/scifact.test.parquet")
    human = pd.read_parquet(wf.workdir / EXP / "runs/human/scifact.test.parquet")
    merged = zs.merge(human, on=["query_id", "doc_id"], suffixes=("_zs", "_human"))
    assert not np.allclose(merged["score_zs"], merged["score_human"])


@pytest.mark.parametrize("run", RUNS[1:])
def test_checkpoint_and_loss_curve(wf, run):
    model = wf.workdir / EXP / "models" / run
    assert (model / "config.json").exists() and (model / "tokenizer_config.json").exists()
    saved = json.loads((model / "biencoder.json").read_text())
    assert saved["pooling"] == "mean" and saved["normalize"] is True
    assert saved["training"]["batch_size"] == 8 and saved["trainset"]["run"] == run
    curve = pd.read_parquet(wf.workdir / EXP / "train" / run / "loss_curve.parquet")
    n_queries = saved["trainset"]["queries"]
    assert list(curve["step"]) == list(range(1, math.ceil(n_queries / 8) + 1))
    # >= 0: a batch whose positives hold all the float32 softmax mass scores exactly 0
    assert curve["loss"].map(math.isfinite).all() and (curve["loss"] >= 0).all()
    assert curve["queries"].sum() == n_queries


def test_training_sets_follow_the_labels(wf):
    root = wf.workdir / EXP / "train"
    n_pool = wf.labels["query_id"].nunique()
    utilsel = read_metadata(root / "utilsel" / "trainset.parquet")
    assert utilsel["queries_dropped"] == math.ceil(n_pool / EMPTY_UTILSEL_EVERY)
    assert utilsel["queries"] == n_pool - utilsel["queries_dropped"]
    assert utilsel["mean_positives"] == 2.0
    utilrank = pd.read_parquet(root / "utilrank" / "trainset.parquet")  # k=10 % of 3 -> 1
    assert (utilrank.groupby("query_id")["positive"].sum() == 1).all()
    assert not utilrank.loc[utilrank["positive"], "is_human_positive"].any()
    cl = read_metadata(root / "utilsel-cl50" / "trainset.parquet")
    assert cl["queries"] == round(n_pool / 2) and cl["settings"]["label_source"] == "human"


def test_second_dry_run_has_nothing_to_do(wf):
    proc = wf.run("-n", *TARGETS, config="config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_one_runs_lr_reruns_only_that_run(wf):
    cfg = json.loads(json.dumps(CONFIG))
    cfg["training"]["runs"]["human"] = {"lr": 1.0e-5}
    wf.write_config("lr.yaml", cfg)
    proc = wf.run("-n", *TARGETS, config="lr.yaml")
    assert planned_jobs(proc.stdout) == {
        "train": 1,
        "encode_corpus": 2,
        "dense_search": 1,
        "evaluate_run": 1,
    }
    assert "params" in proc.stdout.lower()


def test_retraining_stage_one_reruns_the_curriculum_stage(wf):
    proc = wf.run("-n", f"--forcerun={EXP}/models/utilsel", *TARGETS, config="config.yaml")
    jobs = planned_jobs(proc.stdout)
    assert jobs["train"] == 2 and jobs["dense_search"] == 2  # utilsel and utilsel-cl50


def test_changing_search_depth_reruns_only_search_and_evaluation(wf):
    cfg = json.loads(json.dumps(CONFIG))
    cfg["dense"]["depth"] = 100
    wf.write_config("depth.yaml", cfg)
    proc = wf.run("-n", *TARGETS, config="depth.yaml")
    assert planned_jobs(proc.stdout) == {"dense_search": len(RUNS), "evaluate_run": len(RUNS)}


def test_changing_checkpointing_reruns_nothing(wf):
    """Checkpoint frequency is a resource of the train rule, not a param: no retraining."""
    cfg = json.loads(json.dumps(CONFIG))
    cfg["training"]["checkpoints"] = {"every_steps": 1, "keep": 3}
    wf.write_config("ckpt.yaml", cfg)
    proc = wf.run("-n", *TARGETS, config="ckpt.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_resolved_precision_is_recorded_and_params_keep_auto(wf):
    chosen = resolve_precision("auto", detect("cpu")).name
    shard = read_metadata(wf.workdir / EXP / "dense/human/scifact/emb-0.parquet")
    assert shard["encoding"]["precision"] == "auto" and shard["dtype"] == chosen
    run = read_metadata(wf.workdir / EXP / "runs/human/scifact.test.parquet")
    assert run["query_dtype"] == chosen and run["passage_dtypes"] == [chosen]
    saved = json.loads((wf.workdir / EXP / "models/human/biencoder.json").read_text())
    assert saved["training"]["precision"] == "auto" and saved["stats"]["precision"] == chosen
    log = (wf.workdir / EXP / "logs/train/human.log").read_text()
    assert f"training precision auto -> {chosen}: " in log and "capability" in log
    assert not (wf.workdir / EXP / "train/human/resume").exists()  # removed after training


def test_train_job_killed_mid_run_resumes_to_the_same_weights(wf):
    """Last in this module (it retrains `human`). The job is killed as a SLURM time limit
    kills it: Snakemake sees a failed job and deletes its outputs, but not the resume
    directory; the rerun resumes and ends with the uninterrupted run's (the fixture's) weights.
    """
    model = wf.workdir / EXP / "models/human"
    expected = load_file(model / "model.safetensors")
    cfg = json.loads(json.dumps(CONFIG))
    cfg["training"]["checkpoints"] = {"every_steps": 1}
    wf.write_config("resume.yaml", cfg)
    target = f"{EXP}/models/human"
    cmd = wf.command(
        target,
        f"--forcerun={target}",
        "--allowed-rules",
        *non_annotation_rules(),
        config="resume.yaml",
    )
    with (wf.workdir / "resume.err").open("w") as err:  # a file: a full pipe blocks Snakemake
        proc = subprocess.Popen(cmd, env=WORKFLOW_ENV, stderr=err, text=True)
    wait_for(wf.workdir / EXP / "train/human/resume/step-000000001/checkpoint.json", proc)
    (job,) = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if any(arg.endswith("train.py") for arg in p.cmdline())
    ]
    job.kill()
    proc.communicate()
    assert proc.returncode != 0
    assert not model.exists()  # Snakemake removed the failed job's output
    assert (wf.workdir / EXP / "train/human/resume/step-000000001").exists()

    wf.run(target, config="resume.yaml")
    log = (wf.workdir / EXP / "logs/train/human.log").read_text()
    assert "resumed from step" in log
    resumed = load_file(model / "model.safetensors")
    for name, tensor in expected.items():
        assert torch.allclose(tensor, resumed[name], rtol=1e-4, atol=1e-5), name
