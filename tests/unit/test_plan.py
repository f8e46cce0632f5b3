"""The workflow's parse-time decisions (utilann.plan) on configs validated like the Snakefile's."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from snakemake.utils import validate

from utilann import plan
from utilann.train.spec import resolve_runs

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "experiment": "t",
    "datasets": {"scifact": {"format": "beir"}, "nq": {"format": "beir"}},
    "train": {"dataset": "scifact", "split": "train"},
    "evaluation": {"targets": [{"dataset": "scifact", "split": "test"}]},
}


def config(**sections):
    """BASE updated section by section, then validated: the schema fills in every default."""
    cfg = copy.deepcopy(BASE)
    cfg.update(copy.deepcopy(sections))
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg


def test_runs_and_measures():
    cfg = config(
        training={"zeroshot": True, "runs": {"human": {}, "utilsel": {"label_source": "utilsel"}}},
        evaluation={
            "targets": [{"dataset": "scifact", "split": "test"}],
            "measures": ["RR@10", "nDCG@10"],
            "extra_measures": {"scifact": ["nDCG@10", "R@5"]},
        },
    )
    assert plan.dense_runs(cfg) == ["zeroshot", "human", "utilsel"]
    assert plan.retrieval_runs(cfg) == ["bm25", "zeroshot", "human", "utilsel"]
    assert plan.measures_for(cfg, "scifact", "test") == ["RR@10", "nDCG@10", "R@5"]  # no repeat
    assert plan.measures_for(cfg, "nq", "test") == ["RR@10", "nDCG@10"]
    assert plan.eval_targets(cfg) == [("scifact", "test")]


PAPER_LIKE = {
    "datasets": {
        "msmarco": {"format": "msmarco"},
        "scifact": {"format": "beir"},
        "cqadupstack": {"format": "beir", "subsets": ["android", "gis"]},
        "dl19mini": {"format": "beir"},
    },
    "evaluation": {
        "targets": [
            {"dataset": "msmarco", "split": "dev"},
            {"dataset": "msmarco", "split": "dl19", "extra_measures": ["R(rel=2)@1000"]},
            {"dataset": "dl19mini", "split": "test", "group": "in-domain"},
            {"dataset": "scifact", "split": "test"},
            {"dataset": "cqadupstack", "split": "test"},
        ],
        "measures": ["RR@10", "nDCG@10", "R@1000"],
        "hybrid": {"dataset": "msmarco", "split": "dev", "queries": 4},
    },
}


def test_per_target_measures_graded_recall_only_on_dl19():
    cfg = config(**PAPER_LIKE)
    assert plan.measures_for(cfg, "msmarco", "dev") == ["RR@10", "nDCG@10", "R@1000"]
    assert plan.measures_for(cfg, "msmarco", "dl19")[-1] == "R(rel=2)@1000"
    # the Hybrid Test has its own measures; subsets have their benchmark's
    assert plan.measures_for(cfg, "msmarco", "dev-hybrid") == ["RR@10", "nDCG@10"]
    assert plan.measures_for(cfg, "cqadupstack-gis", "test") == ["RR@10", "nDCG@10", "R@1000"]


def test_groups_decide_tables_2_and_3():
    cfg = config(**PAPER_LIKE)
    groups = {(t["dataset"], t["split"]): t["group"] for t in plan.evaluation_list(cfg)}
    assert groups == {
        ("msmarco", "dev"): "in-domain",
        ("msmarco", "dl19"): "in-domain",
        ("dl19mini", "test"): "in-domain",  # a BEIR-layout copy of DL19, set by hand
        ("scifact", "test"): "zero-shot",
        ("cqadupstack", "test"): "zero-shot",
        ("msmarco", "dev-hybrid"): "in-domain",
    }


def test_subsets_are_datasets_of_their_own():
    cfg = config(**PAPER_LIKE)
    assert plan.subset_datasets(cfg) == {
        "cqadupstack-android": ("cqadupstack", "android"),
        "cqadupstack-gis": ("cqadupstack", "gis"),
    }
    assert plan.subset_targets(cfg) == {
        ("cqadupstack", "test"): [("cqadupstack-android", "test"), ("cqadupstack-gis", "test")]
    }
    assert plan.raw_dataset_dir(cfg, "cqadupstack-gis") == "resources/datasets/cqadupstack/gis"
    assert plan.download_name(cfg, "cqadupstack-gis") == "cqadupstack"
    assert plan.dataset_entry(cfg, "cqadupstack-gis")["format"] == "beir"
    assert plan.remove_query(cfg, "cqadupstack-gis") and not plan.remove_query(cfg, "msmarco")


def test_hybrid_target_and_runs():
    cfg = config(**PAPER_LIKE, training={"runs": {"human": {}, "utilsel": {}}})
    assert plan.eval_targets(cfg)[-1] == ("msmarco", "dev-hybrid")
    assert plan.source_split(cfg, "msmarco", "dev-hybrid") == "dev"
    assert plan.source_split(cfg, "msmarco", "dl19") == "dl19"
    assert plan.hybrid_runs(cfg) == ["bm25", "human", "utilsel"]
    assert plan.hybrid_judge(cfg)["model"] == cfg["llm"]["model"]
    bad = copy.deepcopy(PAPER_LIKE)
    bad["evaluation"]["hybrid"]["runs"] = ["replug"]
    with pytest.raises(ValueError, match="unknown run"):
        plan.hybrid_runs(config(**bad))
    off = config()
    assert plan.hybrid_target(off) is None and plan.eval_targets(off) == [("scifact", "test")]


def test_second_baseline_pairs_runs_within_their_curriculum_group():
    runs = {
        "human": {},
        "replug": {"label_source": "utilsel"},
        "utilsel": {"label_source": "utilsel"},
        "replug-cl20": {"init_from": "replug", "query_ratio": 0.2},
        "utilsel-cl20": {"init_from": "utilsel", "query_ratio": 0.2},
        "utilsel-cl100": {"init_from": "utilsel", "query_ratio": 1.0},
        "contriever-utilsel": {"backbone": "facebook/contriever", "label_source": "utilsel"},
    }
    cfg = config(
        training={"runs": runs},
        evaluation={
            "targets": [{"dataset": "scifact", "split": "test"}],
            "significance": {"second_baseline": {"runs": ["replug", "replug-cl20"]}},
        },
    )
    specs = resolve_runs(cfg["training"])
    assert plan.second_baselines(cfg, specs, "human") == {
        "replug": ["utilsel"],  # human is the main baseline; contriever has another backbone
        "replug-cl20": ["utilsel-cl20"],  # CL 100% has no REPLUG counterpart here
    }
    twice = copy.deepcopy(cfg)
    twice["evaluation"]["significance"]["second_baseline"]["runs"] = ["replug", "utilsel"]
    with pytest.raises(ValueError, match="trained alike"):
        plan.second_baselines(twice, specs, "human")
    unknown = copy.deepcopy(cfg)
    unknown["evaluation"]["significance"]["second_baseline"]["runs"] = ["bm25"]
    with pytest.raises(ValueError, match="must be training runs"):
        plan.second_baselines(unknown, specs, "human")


def test_rag_targets_answer_one_split_twice_under_two_names():
    targets = [
        {"dataset": "msmarco", "split": "dev", "top_k": 1},
        {"dataset": "msmarco", "split": "dev", "top_k": 5, "name": "dev-top5"},
    ]
    cfg = config(datasets=PAPER_LIKE["datasets"], rag={"targets": targets})
    assert list(plan.rag_targets(cfg)) == [("msmarco", "dev"), ("msmarco", "dev-top5")]
    assert [t["source_split"] for t in plan.rag_target_list(cfg)] == ["dev", "dev"]
    clash = config(datasets=PAPER_LIKE["datasets"], rag={"targets": targets[:1] * 2})
    with pytest.raises(ValueError, match="give one of them a `name`"):
        plan.rag_targets(clash)


def test_answer_sources_are_listed_once():
    answers = {"path": "qa/dev_v2.1.json.gz", "format": "msmarco"}
    cfg = copy.deepcopy(PAPER_LIKE)
    cfg["evaluation"]["hybrid"]["answers"] = answers
    cfg = config(
        **cfg, rag={"targets": [{"dataset": "msmarco", "split": "dev", "answers": answers}]}
    )
    assert plan.answer_sources(cfg) == [answers]


def test_rag_target_defaults_come_from_the_schema():
    cfg = config(rag={"targets": [{"dataset": "nq", "split": "test"}]})
    target = plan.rag_targets(cfg)[("nq", "test")]
    assert (target["top_k"], target["prompt"], target["measures"]) == (
        5,
        "short_answer",
        ["EM", "F1"],
    )
    assert target["max_tokens"] is None and target["answers"] is None
    assert plan.rag_target_list(cfg) == [
        {
            "dataset": "nq",
            "split": "test",
            "source_split": "test",
            "top_k": 5,
            "measures": ["EM", "F1"],
            "generator": None,
            "base": "test",
        }
    ]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([{"dataset": "nq", "split": "test"}] * 2, "twice"),
        ([{"dataset": "hotpotqa", "split": "test"}], "not declared"),
    ],
)
def test_bad_rag_targets_are_errors(targets, message):
    with pytest.raises(ValueError, match=message):
        plan.rag_targets(config(rag={"targets": targets}))


def test_rag_runs_default_to_every_run_and_must_exist():
    cfg = config(training={"runs": {"human": {}}})
    assert plan.rag_runs(cfg) == ["bm25", "human"]
    assert plan.rag_runs(config(training={"runs": {"human": {}}}, rag={"runs": ["human"]})) == [
        "human"
    ]
    with pytest.raises(ValueError, match="unknown run"):
        plan.rag_runs(config(rag={"runs": ["utilsel"]}))


def test_rag_recall_must_not_collide_with_retrieval_recall():
    rag = {"targets": [{"dataset": "scifact", "split": "test", "top_k": 100}]}
    with pytest.raises(ValueError, match="R@100"):
        plan.check_rag_measures(config(rag=rag))  # R@100 is a default evaluation measure
    plan.check_rag_measures(config(rag={"targets": [{"dataset": "scifact", "split": "test"}]}))


def test_generator_is_the_annotation_llm_unless_named():
    cfg = config(llm={"engine": {"dtype": "bfloat16", "extra": {"swap_space": 4}}})
    generator = plan.rag_generator(cfg)
    assert generator["model"] == "smollm2-135m-instruct"
    assert generator["path"] == "resources/models/smollm2-135m-instruct"  # packaged: prepared dir
    assert generator["engine"]["dtype"] == "bfloat16" and generator["engine"]["swap_space"] == 4
    assert "max_model_len" not in generator["engine"]  # null engine settings are left out
    named = plan.rag_generator(config(rag={"generator": {"model": "meta-llama/Llama-3.1-8B"}}))
    assert named["model"] == "meta-llama/Llama-3.1-8B"
    # a hub id loads from the copy rule fetch_model makes, once, before any GPU job
    assert named["path"] == "resources/models/hub/meta-llama--Llama-3.1-8B"
    assert plan.hub_llms(config(rag={"generator": {"model": "meta-llama/Llama-3.1-8B"}})) == {
        "meta-llama--Llama-3.1-8B": "meta-llama/Llama-3.1-8B"
    }


def test_target_max_tokens_overrides_the_generator_sampling():
    cfg = config(rag={"targets": [{"dataset": "nq", "split": "test", "max_tokens": 64}]})
    target = plan.rag_targets(cfg)[("nq", "test")]
    assert plan.rag_sampling(cfg, target) == {"temperature": 0.0, "max_tokens": 64}
    cfg = config(rag={"targets": [{"dataset": "nq", "split": "test"}]})
    assert plan.rag_sampling(cfg, plan.rag_targets(cfg)[("nq", "test")])["max_tokens"] == 32


def test_baseline_falls_back_to_bm25_with_a_warning():
    assert plan.significance_baseline("human", ["bm25", "human"]) == ("human", None)
    baseline, warning = plan.significance_baseline("human", ["bm25", "zeroshot"])
    assert baseline == "bm25" and "'human' is not a run of this experiment" in warning


def test_primary_target_and_dataset_measure():
    cfg = config()
    assert plan.primary_target(cfg) == {
        "dataset": "scifact",
        "split": "test",
        "measures": ["nDCG@10", "RR@10", "R@100", "R@1000"],
        "measure": "RR@10",
    }
    assert plan.dataset_measure(cfg) == "nDCG@10"
    cfg = config(evaluation={"targets": [], "measures": ["R@1000", "MAP"]})
    assert plan.primary_target(cfg) is None and plan.dataset_measure(cfg) == "R@1000"


def test_run_settings_and_whether_the_annotation_stage_runs():
    cfg = config(
        training={
            "runs": {
                "human": {"loss": "SingleLH", "positive_sampling": "single"},
                "utilrank": {"label_source": "utilrank", "utilrank_threshold": 20},
                "replug": {"label_source": "replug", "loss": "KLDiv"},
            }
        }
    )
    specs = resolve_runs(cfg["training"])
    settings = plan.run_settings(specs)
    assert settings["utilrank"]["utilrank_threshold"] == 20
    assert settings["human"]["utilrank_threshold"] is None  # the cut applies to UtilRank only
    assert settings["human"]["init_from"] is None and settings["human"]["lr"] == 3e-5
    assert plan.needs_annotation(specs)
    assert not plan.needs_annotation({"human": specs["human"]})
    assert not plan.needs_annotation({"replug": specs["replug"]})
    assert plan.needs_replug(specs) and not plan.needs_replug({"human": specs["human"]})
    assert settings["replug"]["replug_temperature"] == 1.0
    assert settings["utilrank"]["replug_temperature"] is None


def test_replug_scorer_is_the_annotation_llm_unless_named():
    assert plan.replug_scorer(config()) == plan.rag_generator(config())
    named = plan.replug_scorer(config(replug={"model": "meta-llama/Llama-3.1-8B"}))
    assert named["path"] == "resources/models/hub/meta-llama--Llama-3.1-8B"
    assert "meta-llama--Llama-3.1-8B" in plan.hub_llms(
        config(replug={"model": "meta-llama/Llama-3.1-8B"})
    )


def test_query_max_len_per_dataset():
    cfg = config(dense={"query_max_len": 32, "query_max_len_by_dataset": {"nq": 64}})
    assert plan.query_max_len(cfg, "nq") == 64 and plan.query_max_len(cfg, "scifact") == 32


def test_report_settings_gather_what_the_tables_need():
    cfg = config(
        training={"runs": {"human": {}}},
        rag={"targets": [{"dataset": "nq", "split": "test"}]},
    )
    settings = plan.report_settings(cfg, resolve_runs(cfg["training"]), "human", 0.05)
    assert settings.runs == ["bm25", "human"] and settings.rag_runs == ["bm25", "human"]
    assert settings.measures == {("scifact", "test"): ["nDCG@10", "RR@10", "R@100", "R@1000"]}
    assert settings.bm25 == {"variant": "flat", "k1": 0.9, "b": 0.4}
    assert settings.generator == "smollm2-135m-instruct" and not settings.annotation
    assert list(settings.specs) == ["human"] and settings.primary["measure"] == "RR@10"


def test_an_undeclared_dataset_is_named_in_the_error():
    with pytest.raises(
        ValueError, match=r"'msmarco' is used but not declared .*\['nq', 'scifact'\]"
    ):
        plan.dataset_entry(config(), "msmarco")


def test_annotation_decoding_per_step():
    steps = ("relsel", "answer", "utilsel")
    assert plan.annotation_decoding(config(), steps) == dict.fromkeys(steps, "free")
    cfg = config(annotation={"decoding": "constrained"})
    assert plan.annotation_decoding(cfg, steps) == dict.fromkeys(steps, "constrained")
    cfg = config(annotation={"decoding": {"relsel": "constrained", "utilrank": "constrained"}})
    assert plan.annotation_decoding(cfg, steps) == {
        "relsel": "constrained",
        "answer": "free",
        "utilsel": "free",
    }


def test_each_rag_target_is_answered_by_each_labelled_generator():
    cfg = config(
        datasets=PAPER_LIKE["datasets"],
        rag={
            "generators": {"llama": "meta-llama/Llama-3.1-8B-Instruct", "annotator": None},
            "targets": [
                {"dataset": "msmarco", "split": "dev", "top_k": 1},
                {"dataset": "msmarco", "split": "dev", "top_k": 5, "name": "dev-top5"},
            ],
        },
    )
    targets = plan.rag_targets(cfg)
    assert list(targets) == [
        ("msmarco", "dev-llama"),
        ("msmarco", "dev-annotator"),
        ("msmarco", "dev-top5-llama"),
        ("msmarco", "dev-top5-annotator"),
    ]
    llama = plan.rag_generator(cfg, targets[("msmarco", "dev-top5-llama")])
    assert llama["path"] == "resources/models/hub/meta-llama--Llama-3.1-8B-Instruct"
    annotator = plan.rag_generator(cfg, targets[("msmarco", "dev-annotator")])
    assert annotator["model"] == cfg["llm"]["model"]  # null = the annotation LLM
    assert [(t["split"], t["base"], t["generator"]) for t in plan.rag_target_list(cfg)] == [
        ("dev-llama", "dev", "llama"),
        ("dev-annotator", "dev", "annotator"),
        ("dev-top5-llama", "dev-top5", "llama"),
        ("dev-top5-annotator", "dev-top5", "annotator"),
    ]
    assert "meta-llama--Llama-3.1-8B-Instruct" in plan.hub_llms(cfg)
    assert plan.generator_names(cfg) == (
        f"llama: meta-llama/Llama-3.1-8B-Instruct, annotator: {cfg['llm']['model']}"
    )


def test_one_runs_evaluation_job_scores_subsets_before_their_mean_and_not_the_hybrid():
    cfg = config(**PAPER_LIKE)
    assert plan.run_eval_targets(cfg) == [
        ("msmarco", "dev"),
        ("msmarco", "dl19"),
        ("dl19mini", "test"),
        ("scifact", "test"),
        ("cqadupstack-android", "test"),
        ("cqadupstack-gis", "test"),
        ("cqadupstack", "test"),
    ]  # ("msmarco", "dev-hybrid") is scored in the judge's job


def test_calibration_sets_get_their_defaults_and_are_checked():
    assert plan.calibration_sets(config()) == []  # disabled by default
    sets = plan.calibration_sets(
        config(
            datasets={**BASE["datasets"], "dl19": {"format": "beir"}},
            annotation={
                "calibration": {
                    "enabled": True,
                    "sets": [
                        {"name": "train", "source": "pools"},
                        {"name": "dl", "source": "qrels", "dataset": "dl19"},
                    ],
                }
            },
        )
    )
    assert sets[0] == {
        "name": "train",
        "source": "pools",
        "split": "test",
        "min_relevance": 2,
        "pool_size": 16,
    }
    assert (sets[1]["dataset"], sets[1]["split"], sets[1]["min_relevance"]) == ("dl19", "test", 2)
    enabled = {"enabled": True}
    assert [
        s["name"] for s in plan.calibration_sets(config(annotation={"calibration": enabled}))
    ] == ["train"]
    undeclared = {**enabled, "sets": [{"name": "x", "source": "qrels", "dataset": "nope"}]}
    with pytest.raises(ValueError, match="'nope' is used but not declared"):
        plan.calibration_sets(config(annotation={"calibration": undeclared}))
    twice = {**enabled, "sets": [{"name": "x", "source": "pools"}] * 2}
    with pytest.raises(ValueError, match="names must be unique"):
        plan.calibration_sets(config(annotation={"calibration": twice}))


def test_a_graded_calibration_set_needs_a_dataset():
    bad = {"enabled": True, "sets": [{"name": "x", "source": "qrels"}]}
    with pytest.raises(Exception, match="dataset"):
        config(annotation={"calibration": bad})


def test_audits_run_when_enabled_or_when_training_drops_judged_useful_negatives():
    assert plan.audits(config()) == () and not plan.drops_judged_useful(config())
    on = config(audit={"false_negatives": {"enabled": True}, "injection": {"enabled": True}})
    assert plan.audits(on) == ("false_negatives", "injection")
    drop = config(training={"negatives": {"drop_judged_useful": True}})
    assert plan.audits(drop) == ("false_negatives",) and plan.drops_judged_useful(drop)
    assert config()["audit"]["false_negatives"]["sample"] == 100  # the schema's default
    assert config(audit={"false_negatives": {"sample": "all"}})["audit"]["false_negatives"][
        "sample"
    ] == ("all")
    for bad in ({"false_negatives": {"sample": 0}}, {"injection": {"queries": 1}}):
        with pytest.raises(Exception, match="sample|queries"):
            config(audit=bad)
    with pytest.raises(Exception, match="steps"):
        config(audit={"injection": {"steps": ["utilrank"]}})


def test_rag_job_params_are_the_targets_generator_sampling_and_questions():
    cfg = config(
        rag={
            "generators": {"llama": "meta-llama/Llama-3.1-8B-Instruct"},
            "max_queries": 7,
            "generator": {"sampling": {"temperature": 0.0, "max_tokens": 32}, "batch_size": 8},
            "targets": [
                {
                    "dataset": "nq",
                    "split": "test",
                    "max_tokens": 64,
                    "answers": {"path": "a.jsonl", "format": "nq-open"},
                }
            ],
        }
    )
    target = plan.rag_targets(cfg)[("nq", "test-llama")]
    generator = plan.rag_generator_params(cfg, target)
    assert generator["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert generator["sampling"]["max_tokens"] == 64 and generator["batch_size"] == 8
    assert plan.rag_question_params(cfg, target) == {
        "answers_format": "nq-open",
        "max_queries": 7,
        "seed": 0,
    }
