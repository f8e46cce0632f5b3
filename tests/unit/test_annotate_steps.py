"""The step registry: the cascade's shape, the label rules, the schema enums, and a toy step
added through the registry alone that runs through the real cascade."""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from utilann.annotate import steps
from utilann.annotate.cascade import Cascade, CascadeSettings, check_template
from utilann.annotate.report import annotation_report
from utilann.annotate.steps import Selected, Step, TopPercent, top_percent_cutoff
from utilann.labels import derive_positives, queries_without_positive
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import Generation
from utilann.llm.templates import load_template, load_templates
from utilann.train.settings import TrainsetSettings, label_sources
from utilann.train.spec import build_spec

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "src" / "utilann" / "prompts"


def test_the_paper_cascade():
    assert steps.strategies() == ("relsel", "utilsel", "utilrank")
    assert steps.cascade_steps(["relsel"]) == ("relsel",)
    assert steps.cascade_steps(["utilrank"]) == ("relsel", "answer", "utilrank")
    every = steps.cascade_steps(["utilrank", "relsel", "utilsel"])
    assert every == ("relsel", "answer", "utilsel", "utilrank")
    assert [[s.name for s in batch] for batch in steps.levels(every)] == [
        ["relsel"],
        ["answer"],
        ["utilsel", "utilrank"],
    ]
    with pytest.raises(ValueError, match="unknown strategy 'answer'"):
        steps.cascade_steps(["answer"])


def test_the_threshold_rule_lives_in_the_registry():
    assert [s for s in ("human", *steps.strategies()) if steps.uses_threshold(s)] == ["utilrank"]
    assert not steps.uses_threshold("nonsense")
    ranked = build_spec(
        "r", {"backbone": "b", "label_source": "utilrank", "utilrank_threshold": 30}
    )
    selected = build_spec("s", {"backbone": "b", "label_source": "utilsel"})
    assert ranked.trainset_params()["utilrank_threshold"] == 30
    assert selected.trainset_params()["utilrank_threshold"] is None
    assert TrainsetSettings("utilsel", utilrank_threshold=None).threshold is None
    with pytest.raises(ValueError, match="needs a utilrank_threshold"):
        TrainsetSettings("utilrank", utilrank_threshold=None)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [(6, 10, 1), (31, 10, 3), (10, 50, 5), (100, 29, 29), (10, 70, 7), (3, 100, 3), (0, 10, 0)],
)
def test_top_percent_cutoff(n, k, expected):
    # floor(k % x n), at least one; 0.29 * 100 is 28.999... in floating point
    assert top_percent_cutoff(n, k) == expected


def test_label_rules():
    rows = pd.DataFrame(
        {
            "selected": [True, False, True, True],
            "rank": pd.array([2, None, 1, 3], dtype="Int32"),
            "list_length": [3, 3, 3, 3],
        }
    )
    assert Selected().positives(rows).tolist() == [True, False, True, True]
    assert TopPercent().positives(rows, 50).tolist() == [False, False, True, False]
    assert TopPercent().positives(rows, 70).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="threshold"):
        TopPercent().positives(rows)
    with pytest.raises(ValueError, match="threshold k must be in"):
        top_percent_cutoff(3, 0)


def test_schema_enums_agree_with_the_registry():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["properties"]
    assert props["annotation"]["properties"]["strategies"]["items"]["enum"] == list(
        steps.strategies()
    )
    run = props["training"]["$defs"]["run_keys"]["properties"]
    assert run["label_source"]["enum"] == list(label_sources())


def test_every_packaged_prompt_version_fits_the_steps():
    for version in ("v1", "v1-small", "v2"):
        templates = load_templates(steps.cascade_steps(steps.strategies()), version)
        CascadeSettings(sampling={}, templates=templates)  # checks formats and inputs
        judge = steps.get_step("judge")
        check_template(judge, load_template(judge.template_name, version))


def test_the_judge_reads_the_gold_answer_and_is_no_strategy():
    judge = steps.get_step("judge")
    assert judge.reference == "gold" and judge.template_name == "utilsel"
    assert judge.needs_answer and not judge.is_strategy
    assert "judge" not in steps.strategies()
    assert steps.dependencies(judge) == ()  # no pseudo-answer needed
    assert "judge" not in steps.cascade_steps(steps.strategies())
    with pytest.raises(ValueError, match="gold answer"):
        Step("bad", "selection", passages="window", reference="gold", labels=Selected())
    with pytest.raises(ValueError, match="reference"):
        Step("bad", "selection", passages="window", reference="oracle")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"answer_format": "poem", "passages": "subset"}, "answer_format"),
        ({"answer_format": "text", "passages": "pool"}, "passages"),
        ({"answer_format": "ranking", "passages": "subset", "labels": Selected()}, "selection"),
        ({"answer_format": "selection", "passages": "subset", "labels": TopPercent()}, "ranking"),
        ({"answer_format": "selection", "passages": "subset", "provides": "subset"}, "windows"),
        ({"answer_format": "selection", "passages": "window", "provides": "answer"}, "text"),
    ],
)
def test_inconsistent_steps_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Step("bad", **kwargs)


def test_a_template_must_match_its_step(tmp_path):
    templates = load_templates(steps.cascade_steps(["relsel"]), "v1")
    wrong = load_template("utilrank", "v1")  # a ranking, with {answer}
    with pytest.raises(ValueError, match="asks for a ranking answer"):
        CascadeSettings(
            sampling={}, templates={**templates, "relsel": wrong}, strategies=["relsel"]
        )
    (tmp_path / "vx").mkdir()
    text = (PACKAGED / "v1" / "relsel.yaml").read_text()
    (tmp_path / "vx" / "relsel.yaml").write_text(text.replace("Question: {query}", "{answer}"))
    odd = load_template("relsel", "vx", tmp_path)
    with pytest.raises(ValueError, match="uses {answer}"):
        CascadeSettings(sampling={}, templates={"relsel": odd}, strategies=["relsel"])


# --- a toy step, added through the registry alone ------------------------------------------

TOY_TEMPLATE = """\
name: toysel
answer_format: selection
turns:
  - role: system
    content: You are ToyJudge. You pick the passages that mention toys.
passage_turns: false
passage: "[{index}] {passage}"
final: |-
  Passages:
  {passages}

  Question: {query}
  Which passages mention a toy? Reply "My selection: [i],[j]".
"""


class MarkerEngine:
    """A deterministic backend: answers each step from marker words in the passages."""

    def __init__(self):
        self.prompts: list[str] = []

    def chat(self, conversations, sampling):
        return [self._answer(c) for c in conversations]

    def _answer(self, conversation):
        system = conversation[0]["content"]
        text = "\n".join(m["content"] for m in conversation if m["role"] == "user")
        passages = [(int(i), p) for i, p in re.findall(r"^\[(\d+)\] (.*)$", text, re.M)]
        self.prompts.append(system.split(",")[0])
        if "ToyJudge" in system:
            picked = [i for i, p in passages if "TOY" in p]
        elif "RelevanceJudge" in system:
            picked = [i for i, p in passages if "REL" in p]
        elif "UtilityJudge" in system:
            picked = [i for i, p in passages if "USE" in p]
        else:
            return Generation("An answer.", 10, 3, "stop")
        return Generation("My selection: " + ",".join(f"[{i}]" for i in picked), 10, 3, "stop")


POOLS = pd.DataFrame(
    {
        "query_id": ["q1"] * 5 + ["q2"] * 3,
        "query": ["toys?"] * 5 + ["nothing?"] * 3,
        "position": [0, 1, 2, 3, 4, 0, 1, 2],
        "doc_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "title": [""] * 8,
        "text": ["REL TOY USE", "REL", "n", "REL TOY", "TOY n", "n", "n", "TOY"],
        "is_human_positive": [True, False, False, False, False, True, False, False],
        "source": ["human"] + ["bm25"] * 4 + ["human"] + ["bm25"] * 2,
        "source_rank": [0, 1, 2, 3, 4, 0, 1, 2],
    }
)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """The registry with one more strategy (restored after the test) and a prompt folder
    holding the packaged v1 templates plus the toy's."""
    monkeypatch.setattr(steps, "STEPS", dict(steps.STEPS))
    step = steps.register(
        Step("toysel", "selection", passages="subset", labels=Selected(), title="ToySel")
    )
    shutil.copytree(PACKAGED / "v1", tmp_path / "prompts" / "vtoy")
    (tmp_path / "prompts" / "vtoy" / "toysel.yaml").write_text(TOY_TEMPLATE)
    return step, tmp_path / "prompts"


def annotate(tmp_path, prompts, strategies, engine):
    names = steps.cascade_steps(strategies)
    settings = CascadeSettings(
        sampling={"temperature": 0.0},
        templates=load_templates(names, "vtoy", prompts),
        strategies=strategies,
        window_size=8,
    )
    identity = ModelIdentity("m", "sha256:0", "0.32.0", "bfloat16")
    with GenerationCache(tmp_path / "cache", "toy") as cache:
        return Cascade(settings, CachedGenerator(cache, identity, lambda: engine, 2)).run(POOLS)


def test_a_toy_step_runs_through_the_cascade(toy, tmp_path):
    step, prompts = toy
    assert steps.strategies() == ("relsel", "utilsel", "utilrank", "toysel")
    assert steps.cascade_steps(["toysel"]) == ("relsel", "toysel")  # no pseudo-answer needed
    assert [
        [s.name for s in b] for b in steps.levels(("relsel", "answer", "utilsel", "toysel"))
    ] == [
        ["relsel"],
        ["answer", "toysel"],
        ["utilsel"],
    ]

    engine = MarkerEngine()
    result = annotate(tmp_path, prompts, ["relsel", "utilsel", "toysel"], engine)
    labels = result.labels
    toy_rows = labels[labels["strategy"] == "toysel"].set_index("doc_id")
    assert len(toy_rows) == len(POOLS) and toy_rows["rank"].isna().all()
    # ToySel sees only RelSel's subset of q1 (a, b, d): e mentions a toy but was not relevant
    selected = toy_rows.loc[["a", "b", "c", "d", "e"], "selected"].tolist()
    assert selected == [True, False, False, True, False]
    assert toy_rows.loc["a", "list_length"] == 3
    assert set(toy_rows.loc[["f", "g", "h"], "list_length"]) == {0}  # q2: RelSel found nothing
    raw = result.raw
    assert raw.groupby("step").size().to_dict() == {
        "relsel": 2,
        "answer": 1,
        "utilsel": 1,
        "toysel": 1,
    }
    assert result.stats["toysel"].calls == 1 and result.stats["toysel"].parse["ok"] == 1

    # everything downstream reads the registry: positives, the report, the training settings
    pos = derive_positives(labels, "toysel")
    assert set(zip(pos["query_id"], pos["doc_id"])) == {("q1", "a"), ("q1", "d")}
    assert queries_without_positive(pos, labels["query_id"]) == ["q2"]
    report = annotation_report(labels, raw, thresholds=[10])
    assert list(report["name"]) == ["relsel", "utilsel", "toysel"]
    toy_report = report.set_index("name").loc["toysel"]
    assert toy_report["positives"] == 2 and toy_report["calls"] == 1
    assert toy_report["prompt_tokens"] == 10 * (2 + 1)  # its cascade: relsel + toysel calls
    assert TrainsetSettings("toysel").threshold is None and "toysel" in label_sources()


def test_toy_step_reruns_from_the_cache(toy, tmp_path):
    _, prompts = toy
    annotate(tmp_path, prompts, ["toysel"], MarkerEngine())
    again = MarkerEngine()
    result = annotate(tmp_path, prompts, ["toysel"], again)
    assert again.prompts == [] and result.stats["toysel"].cached == 1
