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


@pytest.mark.parametrize("strategy", ["single", "pos_one"])
def test_the_first_positive_rotates_through_all_positives_across_epochs(strategy):
    q = query("q", 3, 20)
    sampler = GroupSampler(strategy, 4, seed=1, queries=[q])
    firsts = [sampler.group(q, epoch).doc_ids[0] for epoch in range(6)]
    assert sorted(firsts[:3]) == sorted(q.positives)  # each positive once per 3 epochs
    assert firsts[3:] == firsts[:3]


def test_single_group_is_one_positive_then_distinct_negatives():
    q = query("q", 3, 20)
    group = GroupSampler("single", 8, seed=0, queries=[q]).group(q, 0)
    assert group.positive == (True,) + (False,) * 7
    negatives = group.doc_ids[1:]
    assert len(set(negatives)) == 7 and set(negatives) <= set(q.negatives)


def test_pos_one_draws_the_rest_from_the_other_positives_and_the_negatives():
    """Pos-one (App. B.2): one positive first, the rest sampled from the other positives and
    the negatives together, the drawn positives flagged for the multi-positive losses."""
    q = query("q", 4, 4)
    sampler = GroupSampler("pos_one", 6, seed=0, queries=[q])
    groups = [sampler.group(q, epoch) for epoch in range(8)]
    for g in groups:
        assert g.positive[0] and g.doc_ids[0] in q.positives
        assert len(set(g.doc_ids)) == 6 and set(g.doc_ids) <= set(q.positives + q.negatives)
        assert g.positive == tuple(d in q.positives for d in g.doc_ids)
    # 5 of the 7 other passages per group, 3 of them positives: at least one more every time
    assert all(sum(g.positive) >= 2 for g in groups)
    drawn = Counter(d for g in groups for d, pos in zip(g.doc_ids[1:], g.positive[1:]) if pos)
    assert set(drawn) == set(q.positives)  # every positive also appears in later slots


def test_pos_one_and_single_give_the_same_groups_for_one_positive():
    q = query("q", 1, 20)
    pos_one = GroupSampler("pos_one", 8, seed=4, queries=[q])
    single = GroupSampler("single", 8, seed=4, queries=[q])
    assert all(pos_one.group(q, e) == single.group(q, e) for e in range(3))


def test_groups_carry_the_teacher_utility_when_the_query_has_one():
    q = TrainQuery("q", "t", ("p",), ("n0", "n1", "n2"), utility={"p": 0.7, "n0": 0.2, "n1": 0.1})
    group = GroupSampler("pos_one", 4, seed=0, queries=[q]).group(q, 0)
    assert group.utility == tuple(
        {"p": 0.7, "n0": 0.2, "n1": 0.1}.get(d, 0.0) for d in group.doc_ids
    )
    assert (
        GroupSampler("single", 4, seed=0, queries=[query("r", 1, 3)])
        .group(query("r", 1, 3), 0)
        .utility
        is None
    )


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
    sampler = GroupSampler("single", 5, seed=3, queries=[q])
    group = sampler.group(q, 0)
    assert Counter(group.doc_ids[1:]) == {"q-n0": 2, "q-n1": 2}
    assert GroupSampler("single", 5, seed=3, queries=[q]).group(q, 0) == group


def test_query_without_negatives_borrows_other_queries_passages():
    lonely, other = query("a", 2, 0), query("b", 1, 5)
    group = GroupSampler("single", 4, seed=0, queries=[lonely, other]).group(lonely, 0)
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


def test_single_positive_losses_need_single():
    with pytest.raises(ValueError, match="'single'"):
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
    assert specs["a"].passage_format() == {"passage_title": True, "passage_separator": " "}
    # REPLUG's label settings reach only REPLUG training sets
    assert specs["a"].trainset_params()["replug_temperature"] is None
    replug = resolve_runs(
        {
            **training,
            "runs": {
                "r": {"label_source": "replug", "loss": "KLDiv", "positive_sampling": "pos_one"}
            },
        }
    )["r"]
    assert replug.trainset_params()["replug_temperature"] == 1.0
    assert replug.trainset_params()["replug_score"] == "sum"
    assert zeroshot_spec(training).backbone == "Shitao/RetroMAE_MSMARCO"


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ({"a": {"init_from": "nope"}}, "not a declared run"),
        ({"a": {"init_from": "b"}, "b": {"init_from": "a"}}, "cycle"),
        ({"a": {}, "b": {"init_from": "a", "pooling": "mean"}}, "pooling"),
        ({"zeroshot": {}}, "reserved"),
        ({"a": {"loss": "JointLH", "positive_sampling": "pos_one", "epochs": 0}}, "run 'a'"),
        ({"a": {}, "b": {"init_from": "a", "passage_title": False}}, "passage format"),
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


# --- the paper config's runs ----------------------------------------------------------------


def paper_specs():
    training = yaml.safe_load((REPO / "config/experiments/msmarco-paper.yaml").read_text())[
        "training"
    ]
    training["defaults"] = {**schema_defaults(), **training["defaults"]}
    return resolve_runs(training)


def test_paper_posone_and_rand1_runs_are_different_computations():
    """Pos-one + SumMargLH sees several positives per group; Rand1LH exactly one."""
    import torch

    from utilann.train.losses import build_loss

    specs = paper_specs()
    posone, rand1 = specs["utilsel-posone"].train, specs["utilsel-rand1"].train
    q = query("q", 3, 30)  # UtilSel's ~2.9 positives per query out of the 31-passage pool
    groups = {
        name: [
            GroupSampler(s.positive_sampling, s.group_size, s.seed, [q]).group(q, e)
            for e in range(4)
        ]
        for name, s in (("posone", posone), ("rand1", rand1))
    }
    assert all(sum(g.positive) == 1 for g in groups["rand1"])
    assert any(sum(g.positive) > 1 for g in groups["posone"])
    # the same first positive, the same scores: different losses
    scores = torch.linspace(-1.0, 1.0, posone.group_size, dtype=torch.float64)[None]
    losses = {
        name: build_loss(spec.loss).compute_loss_from_scores(
            scores, torch.tensor([groups[name][0].positive])
        )
        for name, spec in (("posone", posone), ("rand1", rand1))
    }
    assert groups["posone"][0].doc_ids[0] == groups["rand1"][0].doc_ids[0]
    assert losses["posone"].item() != pytest.approx(losses["rand1"].item())


def test_every_paper_cl_run_starts_from_a_pos_one_stage_one():
    """App. D.2: CL stage 1 uses Pos-one; the one exception is Table 10's Pos-all (CL) row, and
    REPLUG (CL) continues the REPLUG run."""
    specs = paper_specs()
    stage2 = {name: s for name, s in specs.items() if s.init_from}
    assert len(stage2) == 16  # 10 RetroMAE (Tables 2, 7, 10), 6 Contriever (Table 2)
    for name, spec in stage2.items():
        parent = specs[spec.init_from]
        assert spec.trainset.label_source == "human" and spec.train.loss == "SingleLH", name
        assert parent.init_from is None and parent.trainset.query_ratio == 1.0, name
        if name == "utilsel-posall-cl20":
            assert parent.train.positive_sampling == "pos_all"
        elif parent.trainset.label_source == "replug":
            assert parent.train.loss == "KLDiv", name
        else:
            assert parent.train.positive_sampling == "pos_one", name
            assert parent.train.loss == "SumMargLH", name
    # Table 7: Exclusion / Inclusion CL runs keep their stage 1's handling of the human positive
    for name in ("utilsel-excl-cl20", "utilsel-excl-cl30", "utilsel-incl-cl20"):
        parent = specs[specs[name].init_from]
        assert parent.trainset.human_positive == ("exclusion" if "excl" in name else "inclusion")


def test_paper_config_has_the_replug_rows_of_tables_2_to_5():
    specs = paper_specs()
    for prefix in ("", "contriever-"):
        replug = specs[f"{prefix}replug"]
        assert replug.trainset.label_source == "replug" and replug.train.loss == "KLDiv"
        for ratio in (20, 100):
            cl = specs[f"{prefix}replug-cl{ratio}"]
            assert cl.init_from == f"{prefix}replug" and cl.trainset.query_ratio == ratio / 100
