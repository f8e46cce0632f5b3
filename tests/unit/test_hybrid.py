"""The Hybrid Test's pool, judge and golden qrels (the real judge LLM runs in tests/e2e).

The stand-in judge selects the passages whose text contains the reference answer it was given,
so what it must select is known, and that it was given the *gold* answer is checked.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from utilann import schemas
from utilann.hybrid import build_pool, golden_qrels, judge_pool, summary
from utilann.llm.batch import CachedGenerator
from utilann.llm.cache import GenerationCache, ModelIdentity
from utilann.llm.engine import Generation
from utilann.llm.templates import load_template

CORPUS = pd.DataFrame(
    [
        ("d1", "Ra", "Ra is the sun god of Egypt."),
        ("d2", "", "The sun god was worshipped at Heliopolis."),
        ("d3", "", "Nut is the goddess of the sky."),
        ("d4", "", "Amun-Ra, the sun god, king of the gods."),
        ("d5", "", "Thoth is the god of writing."),
    ],
    columns=schemas.CORPUS.names,
)
QUERIES = pd.DataFrame(
    [("q1", "who is the egyptian sun god?"), ("q2", "who is thoth?")], columns=["query_id", "text"]
)
QRELS = pd.DataFrame([("q1", "d1", 1, "dev"), ("q2", "d5", 1, "dev")], columns=schemas.QRELS.names)


def run(rows):
    return pd.DataFrame(
        [(q, d, r, 10.0 - r) for q, d, r in rows], columns=schemas.RUN.names
    ).astype({"rank": "int32", "score": "float32"})


RUNS = {
    "bm25": run([("q1", "d1", 1), ("q1", "d3", 2), ("q1", "d5", 3), ("q2", "d5", 1)]),
    "dense": run([("q1", "d4", 1), ("q1", "d1", 2), ("q1", "d2", 3), ("q2", "d3", 1)]),
}


def test_pool_is_the_union_of_the_runs_top_depth_in_a_seeded_order():
    pool = build_pool(RUNS, ["q1", "q2"], QUERIES, QRELS, CORPUS, depth=2, seed=0)
    assert list(pool.columns) == schemas.POOLS.names
    q1 = pool[pool["query_id"] == "q1"]
    assert set(q1["doc_id"]) == {"d1", "d3", "d4"}  # top 2 of each run; d5, d2 are rank 3
    assert q1["position"].tolist() == [0, 1, 2]
    by_doc = q1.set_index("doc_id")
    assert by_doc.at["d1", "source"] == "bm25,dense" and by_doc.at["d1", "source_rank"] == 1
    assert by_doc.at["d1", "is_human_positive"] and not by_doc.at["d3", "is_human_positive"]
    assert (
        by_doc.at["d1", "text"] == "Ra is the sun god of Egypt."
        and by_doc.at["d1", "title"] == "Ra"
    )
    again = build_pool(RUNS, ["q1", "q2"], QUERIES, QRELS, CORPUS, depth=2, seed=0)
    pd.testing.assert_frame_equal(pool, again)
    orders = {
        tuple(build_pool(RUNS, ["q1"], QUERIES, QRELS, CORPUS, 3, seed)["doc_id"])
        for seed in range(8)
    }
    assert len(orders) > 1  # the seed shuffles the display order


def test_pool_errors_name_the_problem():
    with pytest.raises(ValueError, match="no text"):
        build_pool(RUNS, ["q9"], QUERIES, QRELS, CORPUS, 2, 0)
    with pytest.raises(KeyError, match="not in the corpus"):
        build_pool(RUNS, ["q1"], QUERIES, QRELS, CORPUS[CORPUS["doc_id"] != "d4"], 2, 0)


class AnswerMatchingJudge:
    """Selects the shown passages that contain the reference answer; records the answers."""

    def __init__(self):
        self.answers = []

    def chat(self, conversations, samplings):
        out = []
        for conversation in conversations:
            final = conversation[-1]["content"]
            answer = re.search(r"Reference answer: (.*)", final).group(1).strip()
            self.answers.append(answer)
            shown = [
                (int(m.group(1)), m.group(2))
                for turn in conversation
                if turn["role"] == "user"
                for m in [re.match(r"\[(\d+)\] (.*)", turn["content"], re.DOTALL)]
                if m
            ]
            picked = [i for i, text in shown if answer.lower() in text.lower()]
            out.append(
                Generation(
                    "My selection:[" + ",".join(f"[{i}]" for i in picked) + "]", 50, 5, "stop"
                )
            )
        return out


def judged(tmp_path, window_size=2):
    pool = build_pool(RUNS, ["q1", "q2"], QUERIES, QRELS, CORPUS, depth=3, seed=0)
    engine = AnswerMatchingJudge()
    with GenerationCache(tmp_path / "cache", "t") as cache:
        generator = CachedGenerator(
            cache, ModelIdentity("m", "sha256:0", "0", "bf16"), lambda: engine, chunk_size=8
        )
        result = judge_pool(
            pool,
            {"q1": ["sun god", "Ra"], "q2": ["writing"]},
            load_template("utilsel", "v2"),
            generator,
            {"temperature": 0.0},
            window_size=window_size,
            passage_max_words=50,
        )
    return pool, engine, result


def test_the_judge_is_given_the_gold_answer_and_sees_each_passage_once(tmp_path):
    pool, engine, result = judged(tmp_path, window_size=2)
    assert set(engine.answers) == {"sun god", "writing"}  # the first gold answer of each query
    raw = result.raw
    assert (raw["step"] == "judge").all()
    shown = [d for ids in raw[raw["query_id"] == "q1"]["doc_ids"] for d in ids]
    assert sorted(shown) == sorted(pool[pool["query_id"] == "q1"]["doc_id"])  # once each
    assert raw.groupby("query_id")["window"].nunique().to_dict() == {"q1": 3, "q2": 1}
    labels = result.labels
    assert list(labels.columns) == schemas.LABELS.names and (labels["strategy"] == "judge").all()
    picked = set(labels[labels["selected"]]["doc_id"])
    assert picked == {"d1", "d2", "d4", "d5"}  # every pooled passage holding its gold answer
    assert result.stats.calls == len(raw) and result.stats.parse["ok"] == len(raw)


def test_golden_qrels_are_human_plus_judge_positives(tmp_path):
    pool, _, result = judged(tmp_path)
    human = pd.concat([QRELS, pd.DataFrame([("q1", "d3", 2, "dev")], columns=schemas.QRELS.names)])
    golden = golden_qrels(result.labels, human, ["q1", "q2"], "dev-hybrid")
    assert list(golden.columns) == schemas.QRELS.names
    assert set(golden["split"]) == {"dev-hybrid"}
    as_dict = {
        (q, d): r for q, d, r in golden[["query_id", "doc_id", "relevance"]].itertuples(index=False)
    }
    # d3 is a human positive (grade 2 kept) the judge rejected; d2, d4 only the judge found
    assert as_dict == {
        ("q1", "d1"): 1,
        ("q1", "d2"): 1,
        ("q1", "d3"): 2,
        ("q1", "d4"): 1,
        ("q2", "d5"): 1,
    }
    stats = summary(result.labels, golden)
    assert stats["queries"] == 2 and stats["judge_positives"] == 4
    assert stats["judge_recall_of_human"] == 1.0  # d1 and d5 (d3 is not in the pool as human)


def test_a_query_without_gold_answer_is_an_error(tmp_path):
    pool = build_pool(RUNS, ["q1"], QUERIES, QRELS, CORPUS, depth=2, seed=0)
    with GenerationCache(tmp_path / "c", "t") as cache:
        generator = CachedGenerator(
            cache, ModelIdentity("m", "s", "0", "bf16"), AnswerMatchingJudge
        )
        with pytest.raises(ValueError, match="no gold answer"):
            judge_pool(pool, {}, load_template("utilsel", "v2"), generator, {}, 20, 50)
