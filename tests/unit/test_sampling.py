"""Training data: labels -> training set (data.py), groups and batches (sampling.py), and the
config -> run spec resolution (spec.py) that decides what each rule receives."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
import yaml

from utilann.schemas import LABELS
from utilann.train.data import (
    TrainQuery,
    build_trainset,
    load_training_queries,
    sample_fraction,
)
from utilann.train.sampling import GroupSampler, epoch_batches, n_batches
from utilann.train.settings import TrainsetSettings, TrainSettings
from utilann.train.spec import merge_run, resolve_runs, zeroshot_spec

REPO = Path(__file__).resolve().parents[2]


def query(qid: str, n_pos: int, n_neg: int) -> TrainQuery:
    return TrainQuery(
        qid,
        f"text {qid}",
        tuple(f"{qid}-p{i}" for i in range(n_pos)),
        tuple(f"{qid}-n{i}" for i in range(n_neg)),
    )


# --- groups ---------------------------------------------------------------------------------


def test_pos_one_rotates_through_all_positives_across_epochs():
    q = query("q", 3, 20)
    sampler = GroupSampler("pos_one", 4, seed=1, queries=[q])
    firsts = [sampler.group(q, epoch).doc_ids[0] for epoch in range(6)]
    assert sorted(firsts[:3]) == sorted(q.positives)  # each positive once per 3 epochs
    assert firsts[3:] == firsts[:3]


def test_pos_one_group_is_one_positive_then_distinct_negatives():
    q = query("q", 3, 20)
    group = GroupSampler("pos_one", 8, seed=0, queries=[q]).group(q, 0)
    assert group.positive == (True,) + (False,) * 7
    negatives = group.doc_ids[1:]
    assert len(set(negatives)) == 7 and set(negatives) <= set(q.negatives)


def test_pos_all_keeps_every_positive_up_to_group_minus_one():
    few, many = query("a", 3, 10), query("b", 6, 10)
    sampler = GroupSampler("pos_all", 4, seed=0, queries=[few, many])
    g = sampler.group(few, 0)
    assert g.positive == (True, True, True, False) and set(g.doc_ids[:3]) == set(few.positives)
    g = sampler.group(many, 0)
    assert g.positive == (True, True, True, False) and set(g.doc_ids[:3]) < set(many.positives)


def test_pos_avg_uses_the_rounded_average_count():
    qs = [query("a", 1, 10), query("b", 3, 10), query("c", 5, 10)]  # mean 3
    sampler = GroupSampler("pos_avg", 8, seed=0, queries=qs)
    assert [sum(sampler.group(q, 0).positive) for q in qs] == [1, 3, 3]


def test_small_pool_is_topped_up_deterministically():
    q = query("q", 1, 2)
    sampler = GroupSampler("pos_one", 5, seed=3, queries=[q])
    group = sampler.group(q, 0)
    assert Counter(group.doc_ids[1:]) == {"q-n0": 2, "q-n1": 2}
    assert GroupSampler("pos_one", 5, seed=3, queries=[q]).group(q, 0) == group


def test_query_without_negatives_borrows_other_queries_passages():
    lonely, other = query("a", 2, 0), query("b", 1, 5)
    group = GroupSampler("pos_one", 4, seed=0, queries=[lonely, other]).group(lonely, 0)
    borrowed = group.doc_ids[1:]
    assert len(set(borrowed)) == 3 and not set(borrowed) & set(lonely.positives)


def test_groups_are_reproducible_and_change_with_the_epoch():
    qs = [query(f"q{i}", 2, 30) for i in range(4)]
    a = GroupSampler("pos_all", 8, seed=7, queries=qs)
    b = GroupSampler("pos_all", 8, seed=7, queries=list(reversed(qs)))
    assert [a.group(q, 0) for q in qs] == [b.group(q, 0) for q in qs]
    assert a.group(qs[0], 0).doc_ids != a.group(qs[0], 1).doc_ids


def test_epoch_batches_cover_every_query_once():
    batches = list(epoch_batches(10, 4, epoch=0, seed=0))
    assert [len(b) for b in batches] == [4, 4, 2] == [len(b) for b in batches[: n_batches(10, 4)]]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert [len(b) for b in epoch_batches(10, 4, 0, 0, drop_last=True)] == [4, 4]
    assert n_batches(10, 4, drop_last=True) == 2
    assert batches != list(epoch_batches(10, 4, epoch=1, seed=0))


# --- training sets --------------------------------------------------------------------------


@pytest.fixture
def pools() -> pd.DataFrame:
    rows = []
    for qid, docs in {"q1": ["d1", "d2", "d3", "d4"], "q2": ["e1", "e2", "e3"]}.items():
        for pos, doc in enumerate(docs):
            rows.append(
                {
                    "query_id": qid,
                    "query": f"query {qid}",
                    "position": pos,
                    "doc_id": doc,
                    "title": "",
                    "text": f"text {doc}",
                    "is_human_positive": pos == 0,
                    "source": "human" if pos == 0 else "bm25",
                    "source_rank": pos,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def labels(pools) -> pd.DataFrame:
    selected = {
        "relsel": {"d1", "d2", "d3", "e1"},
        "utilsel": {"d2", "d3"},  # q2: nothing selected
    }
    ranks = {"d2": 1, "d1": 2, "d3": 3, "e1": 1}  # UtilRank over RelSel's lists (3 and 1)
    rows = []
    for r in pools.itertuples():
        for strategy, chosen in selected.items():
            rows.append(
                (
                    r.query_id,
                    r.doc_id,
                    r.position,
                    r.is_human_positive,
                    strategy,
                    r.doc_id in chosen,
                    None,
                    None,
                )
            )
        rows.append(
            (
                r.query_id,
                r.doc_id,
                r.position,
                r.is_human_positive,
                "utilrank",
                False,
                ranks.get(r.doc_id),
                3 if r.query_id == "q1" else 1,
            )
        )
    return pd.DataFrame(
        rows,
        columns=LABELS.names,
    )


def positives_of(rows: pd.DataFrame) -> dict[str, set[str]]:
    return {q: set(g.loc[g["positive"], "doc_id"]) for q, g in rows.groupby("query_id")}


def test_human_labels(pools):
    rows, stats = build_trainset(pools, None, TrainsetSettings("human"))
    assert positives_of(rows) == {"q1": {"d1"}, "q2": {"e1"}}
    assert stats["queries"] == 2 and stats["human_positive_recall"] == 1.0


def test_utilsel_random_policy_drops_empty_queries_and_counts_them(pools, labels):
    rows, stats = build_trainset(pools, labels, TrainsetSettings("utilsel"))
    assert positives_of(rows) == {"q1": {"d2", "d3"}}
    assert set(rows["doc_id"]) == {"d1", "d2", "d3", "d4"}  # d1 (human) is now a negative
    assert stats["queries_dropped"] == 1 and stats["human_positive_recall"] == 0.0


def test_exclusion_removes_the_human_passage(pools, labels):
    rows, _ = build_trainset(pools, labels, TrainsetSettings("utilsel", human_positive="exclusion"))
    assert set(rows["doc_id"]) == {"d2", "d3", "d4"}


def test_inclusion_always_adds_the_human_positive(pools, labels):
    rows, stats = build_trainset(
        pools, labels, TrainsetSettings("utilsel", human_positive="inclusion")
    )
    assert positives_of(rows) == {"q1": {"d1", "d2", "d3"}, "q2": {"e1"}}
    assert stats["queries_dropped"] == 0


def test_union_and_curriculum_fractions_pick_the_same_queries(pools, labels):
    union, stats = build_trainset(
        pools, labels, TrainsetSettings("utilsel", union_ratio=0.5, seed=5)
    )
    picked = sample_fraction(["q1", "q2"], 0.5, seed=5)
    assert stats["union_queries"] == 1
    cl, _ = build_trainset(pools, None, TrainsetSettings("human", query_ratio=0.5, seed=5))
    assert set(cl["query_id"]) == picked
    expected = (
        {"q1": {"d1", "d2", "d3"}} if picked == {"q1"} else {"q1": {"d2", "d3"}, "q2": {"e1"}}
    )
    assert positives_of(union) == expected


def test_keep_policy_keeps_queries_without_positive(pools, labels):
    rows, stats = build_trainset(pools, labels, TrainsetSettings("utilsel", empty_policy="keep"))
    assert positives_of(rows)["q2"] == set() and stats["queries_without_positive"] == 1
    queries, passages = load_training_queries(rows)
    assert [q.query_id for q in queries] == ["q1", "q2"] and queries[1].positives == ()
    assert passages["e2"] == "text e2"


@pytest.mark.parametrize(("k", "expected"), [(10, {"d2"}), (50, {"d2"}), (70, {"d2", "d1"})])
def test_utilrank_threshold_cuts_the_relsel_list(pools, labels, k, expected):
    rows, _ = build_trainset(pools, labels, TrainsetSettings("utilrank", utilrank_threshold=k))
    assert positives_of(rows) == {"q1": expected, "q2": {"e1"}}


def test_human_policy_gives_empty_queries_their_human_positive(pools, labels):
    rows, stats = build_trainset(pools, labels, TrainsetSettings("utilsel", empty_policy="human"))
    assert positives_of(rows) == {"q1": {"d2", "d3"}, "q2": {"e1"}}  # q1 keeps the LLM's choice
    assert stats["queries_without_positive"] == 1 and stats["queries_human_fallback"] == 1
    assert stats["queries_dropped"] == 0
    nothing = labels.assign(selected=False)
    rows, stats = build_trainset(pools, nothing, TrainsetSettings("utilsel", empty_policy="human"))
    assert positives_of(rows) == {"q1": {"d1"}, "q2": {"e1"}}
    assert stats["queries_human_fallback"] == 2


def test_human_policy_conflicts_with_exclusion():
    with pytest.raises(ValueError, match="choose one"):
        TrainsetSettings("utilsel", empty_policy="human", human_positive="exclusion")


@pytest.mark.parametrize("policy", ["drop", "keep"])
def test_labels_without_any_positive_fail_naming_the_cause(pools, labels, policy):
    nothing = labels.assign(selected=False)
    with pytest.raises(
        ValueError, match="all 2 selected queries are without one under label_source 'utilsel'"
    ):
        build_trainset(pools, nothing, TrainsetSettings("utilsel", empty_policy=policy))


def test_llm_source_without_labels_is_an_error(pools):
    with pytest.raises(ValueError, match="needs the LLM labels"):
        build_trainset(pools, None, TrainsetSettings("relsel"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label_source": "human", "human_positive": "exclusion"},
        {"label_source": "utilsel", "union_ratio": 0.2, "human_positive": "inclusion"},
        {"label_source": "gpt"},
        {"query_ratio": 0.0},
    ],
)
def test_inconsistent_label_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainsetSettings(**kwargs)


def test_single_positive_losses_need_pos_one():
    with pytest.raises(ValueError, match="pos_one"):
        TrainSettings(loss="Rand1LH", positive_sampling="pos_all")


# --- run specs ------------------------------------------------------------------------------


def schema_defaults() -> dict:
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    props = schema["properties"]["training"]["properties"]["defaults"]["properties"]
    return {key: value["default"] for key, value in props.items()}


def test_schema_defaults_are_the_settings_defaults():
    defaults = schema_defaults()
    for cls in (TrainsetSettings, TrainSettings):
        for f in fields(cls):
            assert defaults[f.name] == f.default, f"{cls.__name__}.{f.name}"


def test_runs_merge_defaults_with_overrides_and_slice_params():
    training = {
        "defaults": schema_defaults(),
        "runs": {"a": {"lr": 1e-5, "label_source": "utilsel"}, "b": {}},
    }
    specs = resolve_runs(training)
    assert specs["a"].train.lr == 1e-5 and specs["b"].train.lr == 3e-5
    assert specs["a"].trainset_params()["utilrank_threshold"] is None
    assert (
        "lr" not in specs["a"].trainset_params() and "label_source" not in specs["a"].train_params()
    )
    assert specs["a"].encoder_params() == {"pooling": "cls", "normalize": False}
    assert zeroshot_spec(training).backbone == "Shitao/RetroMAE_MSMARCO"


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ({"a": {"init_from": "nope"}}, "not a declared run"),
        ({"a": {"init_from": "b"}, "b": {"init_from": "a"}}, "cycle"),
        ({"a": {}, "b": {"init_from": "a", "pooling": "mean"}}, "pooling"),
        ({"zeroshot": {}}, "reserved"),
        ({"a": {"loss": "JointLH", "positive_sampling": "pos_one", "epochs": 0}}, "run 'a'"),
    ],
)
def test_bad_run_declarations_fail_clearly(runs, message):
    with pytest.raises(ValueError, match=message):
        resolve_runs({"defaults": schema_defaults(), "runs": runs})


def test_unknown_run_key_fails():
    with pytest.raises(ValueError, match="unknown training run key"):
        merge_run(schema_defaults(), {"learning_rate": 1e-5})


@pytest.mark.parametrize("path", ["config/config.yaml", "config/experiments/msmarco-paper.yaml"])
def test_shipped_configs_resolve(path):
    training = yaml.safe_load((REPO / path).read_text())["training"]
    training["defaults"] = {**schema_defaults(), **training.get("defaults", {})}
    specs = resolve_runs(training)
    assert specs, path
