"""Cascade logic with a scripted stand-in engine (the real vLLM path is in tests/e2e).

The stand-in judges passages by marker words in their text, so the expected labels are known:
REL = relevant, USE = useful, RANKn = utility rank n.
"""

import importlib.resources
import re

import pandas as pd
import pytest

from utilann.annotate.cascade import Cascade, CascadeSettings
from utilann.labels import derive_positives
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import PROMPT_TOO_LONG, Generation
from utilann.llm.templates import load_templates, parse_template

STEPS = ("relsel", "answer", "utilsel", "utilrank")
IDENTITY = ModelIdentity("m", "sha256:0", "0.32.0", "bfloat16")


class ScriptedEngine:
    """Answers each step from the passage markers; counts prompts; can die after n chunks."""

    def __init__(self, die_after_chunks: int | None = None):
        self.prompts = 0
        self.chunks = 0
        self.sampling = []
        self.die_after_chunks = die_after_chunks

    def chat(self, conversations, sampling):
        if self.die_after_chunks is not None and self.chunks >= self.die_after_chunks:
            raise KeyboardInterrupt("simulated kill")
        self.chunks += 1
        self.prompts += len(conversations)
        self.sampling += [(c[0]["content"], s) for c, s in zip(conversations, sampling)]
        return [self._answer(c) for c in conversations]

    @staticmethod
    def _answer(conversation):
        system = conversation[0]["content"]
        passages = [
            (int(m.group(1)), m.group(2))
            for turn in conversation
            if turn["role"] == "user"
            for m in [re.match(r"\[(\d+)\] (.*)", turn["content"], re.DOTALL)]
            if m
        ]
        if any("TOOLONG" in turn["content"] for turn in conversation):
            return Generation("", 10_000, 0, PROMPT_TOO_LONG)
        if "RelevanceJudge" in system:
            ids = [i for i, text in passages if "REL" in text]
            text = "My selection: " + ",".join(f"[{i}]" for i in ids) if ids else "My selection: []"
        elif "UtilityJudge" in system:
            text = "My selection: " + ",".join(f"[{i}]" for i, t in passages if "USE" in t)
        elif "UtilityRanker" in system:
            order = sorted(passages, key=lambda p: int(re.search(r"RANK(\d)", p[1]).group(1)))
            text = " > ".join(f"[{i}]" for i, _ in order)
        else:
            text = "A short answer."
        return Generation(text, 100, 10, "stop")


def pool(query_id, texts, humans=(0,)):
    return pd.DataFrame(
        {
            "query_id": query_id,
            "query": f"question {query_id}?",
            "position": range(len(texts)),
            "doc_id": [f"{query_id}-d{i}" for i in range(len(texts))],
            "title": "",
            "text": texts,
            "is_human_positive": [i in humans for i in range(len(texts))],
            "source": "bm25",
            "source_rank": range(len(texts)),
        }
    )


POOLS = pd.concat(
    [
        pool("qa", ["REL USE RANK1", "n1", "REL RANK3", "n3", "REL USE RANK2", "n5", "n6"]),
        pool("qb", ["nothing here", "n1", "n2"]),
        pool("qc", ["REL RANK1", "n1", "n2", "REL RANK2 USE"]),
    ],
    ignore_index=True,
)


def settings(**overrides):
    base = dict(
        sampling={"temperature": 0.0, "max_tokens": 16},
        templates=load_templates(STEPS, "v1"),
        window_size=3,
    )
    return CascadeSettings(**{**base, **overrides})


def cascade(cache, factory, **overrides):
    return Cascade(settings(**overrides), CachedGenerator(cache, IDENTITY, factory, chunk_size=2))


def run(tmp_path, engine, **overrides):
    with GenerationCache(tmp_path / "cache", "t.shard-0") as cache:
        return cascade(cache, lambda: engine, **overrides).run(POOLS)


def positives(labels, strategy, k=None):
    pos = derive_positives(labels, strategy, k)
    return set(zip(pos["query_id"], pos["doc_id"], strict=True))


def test_cascade_labels(tmp_path):
    result = run(tmp_path, ScriptedEngine())
    labels = result.labels
    assert len(labels) == 3 * len(POOLS)
    assert positives(labels, "relsel") == {
        ("qa", "qa-d0"),
        ("qa", "qa-d2"),
        ("qa", "qa-d4"),
        ("qc", "qc-d0"),
        ("qc", "qc-d3"),
    }
    assert positives(labels, "utilsel") == {("qa", "qa-d0"), ("qa", "qa-d4"), ("qc", "qc-d3")}
    assert positives(labels, "utilrank", 10) == {("qa", "qa-d0"), ("qc", "qc-d0")}
    assert positives(labels, "utilrank", 50) == {("qa", "qa-d0"), ("qc", "qc-d0")}
    assert positives(labels, "utilrank", 70) == {("qa", "qa-d0"), ("qa", "qa-d4"), ("qc", "qc-d0")}
    qa = labels[(labels.query_id == "qa") & (labels.strategy == "utilrank")].set_index("doc_id")
    assert qa.loc[["qa-d0", "qa-d4", "qa-d2"], "rank"].tolist() == [1, 2, 3]
    assert qa["rank"].isna().sum() == 4 and set(qa["list_length"]) == {3}
    relsel = labels[(labels.query_id == "qa") & (labels.strategy == "relsel")]
    assert set(relsel["list_length"]) == {7}
    # qb: RelSel picks nothing -> no pseudo-answer, no utility call, no positives
    raw = result.raw
    assert set(raw.loc[raw.query_id == "qb", "step"]) == {"relsel"}
    assert result.queries == {"queries": 3, "passages": 14, "relsel_empty": 1}
    assert set(labels.loc[labels.query_id == "qb", "list_length"]) == {3, 0}


def test_human_positive_label_comes_from_the_first_window(tmp_path):
    # qa's human positive d0 is passage [1] of all three windows (fixed_first, window 3)
    result = run(tmp_path, ScriptedEngine())
    windows = result.raw[(result.raw.query_id == "qa") & (result.raw.step == "relsel")]
    assert len(windows) == 3
    assert all(ids[0] == "qa-d0" for ids in windows["doc_ids"])


def test_rerun_is_served_from_cache_without_starting_the_engine(tmp_path):
    first = run(tmp_path, ScriptedEngine())
    started = []
    with GenerationCache(tmp_path / "cache", "t.shard-0") as cache:
        again = cascade(cache, lambda: started.append(1)).run(POOLS)
    assert not started
    assert all(st.generated == 0 for st in again.stats.values())
    pd.testing.assert_frame_equal(first.labels, again.labels)


def test_resume_after_a_crash_regenerates_only_the_lost_chunks(tmp_path):
    reference = run(tmp_path / "ref", ScriptedEngine())
    total = sum(st.calls for st in reference.stats.values())

    dying = ScriptedEngine(die_after_chunks=3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, dying)
    resumed_engine = ScriptedEngine()
    resumed = run(tmp_path, resumed_engine)
    cached = sum(st.cached for st in resumed.stats.values())
    assert cached == dying.prompts > 0
    assert resumed_engine.prompts == total - dying.prompts
    pd.testing.assert_frame_equal(reference.labels, resumed.labels)


def test_a_changed_template_reruns_only_its_step(tmp_path):
    run(tmp_path, ScriptedEngine())
    templates = dict(load_templates(STEPS, "v1"))
    old = templates["utilsel"]
    source = importlib.resources.files("utilann") / "prompts" / "v1" / "utilsel.yaml"
    templates["utilsel"] = parse_template(
        source.read_bytes().replace(b"Do not explain", b"Never explain"), "utilsel", "v2"
    )
    assert templates["utilsel"].sha256 != old.sha256
    engine = ScriptedEngine()
    result = run(tmp_path, engine, templates=templates)
    generated = {step: st.generated for step, st in result.stats.items()}
    assert generated == {"relsel": 0, "answer": 0, "utilsel": 2, "utilrank": 0}


def test_strategies_subset_skips_unneeded_steps(tmp_path):
    engine = ScriptedEngine()
    result = run(tmp_path, engine, strategies=("relsel",))
    assert set(result.raw["step"]) == {"relsel"}
    assert set(result.labels["strategy"]) == {"relsel"}


def test_prompt_too_long_is_failed_and_not_cached(tmp_path):
    too_long = pd.concat([POOLS, pool("qz", ["REL TOOLONG", "x"])], ignore_index=True)
    with GenerationCache(tmp_path / "cache", "w") as cache:
        result = cascade(cache, ScriptedEngine).run(too_long)
        raw = result.raw[result.raw.query_id == "qz"]
        assert raw["parse_status"].tolist() == ["failed"]
        assert cache.get_many(raw["cache_key"].tolist()) == {}


def test_constrained_steps_carry_the_grammar_of_the_passages_shown(tmp_path):
    from utilann.llm.grammar import answer_grammar

    engine = ScriptedEngine()
    templates = load_templates(STEPS, "v1")
    result = run(tmp_path, engine, decoding={"relsel": "constrained", "utilrank": "free"})
    relsel = [s for system, s in engine.sampling if "RelevanceJudge" in system]
    assert len(relsel) == (result.raw["step"] == "relsel").sum()
    syntax = templates["relsel"].answer_syntax
    # one grammar per window size: qa 3+3+3 (its positive opens every window), qb 3, qc 3+2
    assert {s["structured_outputs"]["grammar"] for s in relsel} == {
        answer_grammar(syntax, 3),
        answer_grammar(syntax, 2),
    }
    others = [s for system, s in engine.sampling if "RelevanceJudge" not in system]
    assert others and not any("structured_outputs" in s for s in others)
    free = run(tmp_path / "free", ScriptedEngine())
    pd.testing.assert_frame_equal(result.labels, free.labels)  # well-formed answers: same labels


def test_unknown_decoding_mode_is_rejected():
    with pytest.raises(ValueError, match="decoding"):
        settings(decoding={"relsel": "greedy"})
