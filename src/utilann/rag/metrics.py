"""Answer metrics of the RAG tables (paper Tables 4, 5 and 13) and the retrieval "Recall" column.

Definitions, and why each was chosen:

* **EM / F1** (NQ, HotpotQA): SQuAD normalisation (lowercase, ASCII punctuation removed, the
  articles a/an/the removed, whitespace collapsed), then exact match / token-overlap F1, the
  maximum over all gold answers. This is the standard open-domain QA definition (DPR, RAG,
  KILT); the paper's EM levels (~43 %) only make sense with it. When the prediction or the gold
  answer normalises to no token at all, F1 is 1 if both are empty and 0 otherwise (the SQuAD
  v2.0 rule; v1.1 would give 0 even for two empty strings).
* **BLEU-3 / BLEU-4** (MS MARCO QA): corpus-level, computed by the COCO caption toolkit's
  ``Bleu`` (``pycocoevalcap``), the code the official MS MARCO QA evaluation
  (``ms_marco_eval.py``) calls: n-gram counts clipped by the maximum count over the references
  of each query, precisions pooled over the corpus, geometric mean of the 1..n precisions,
  brevity penalty against the *closest* reference length (ties go to the shorter one).
  Because it is corpus-level there is no per-query value and no significance test (as in the
  paper).
* **ROUGE-L**: the same toolkit's ``Rouge``, as the official evaluation computes it: longest
  common subsequence against each reference, the *best precision and the best recall over the
  references taken separately*, combined with beta = 1.2 (recall weighted). Its corpus figure
  is the mean of the per-query values, so ROUGE-L is also a per-query measure (t-tested).
* **Tokenisation** for BLEU and ROUGE-L: lowercase, then words (``\\w+``) and single
  punctuation marks as tokens, joined by single spaces (the toolkit splits on spaces). The
  official script tokenises with spaCy's English tokenizer and lowercases; this regex agrees
  with it on ordinary text without pulling spaCy in, and keeps non-ASCII letters.
* **BERTScore**: the ``bert-score`` package with a *local* model (F1, the maximum over gold
  answers, no baseline rescaling). Never downloaded: without a model path, the package, or the
  directory, it is skipped with a logged reason. The paper does not say which model it used.
* **R@k** (the "Recall" column): ir_measures ``R@k`` of the ranked list whose top-k passages
  were fed to the generator, i.e. the fraction of a query's relevant passages found in the
  top k, averaged over queries (so R@1 for MS MARCO QA and R@5 for NQ and HotpotQA, as in the
  paper). The run's ``rank`` column decides the order, so the passages counted are exactly the
  ones the generator saw.

All values are fractions in [0, 1], like ir_measures'.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import evaluation, schemas

log = logging.getLogger(__name__)

PER_QUERY_MEASURES = ("EM", "F1", "ROUGE-L", "BERTScore")
"""Measures with a value per query (averaged for the table, usable in t-tests)."""

CORPUS_MEASURES = {"BLEU-3": 3, "BLEU-4": 4}
"""Corpus-level measures and their maximum n-gram order."""

ANSWER_MEASURES = PER_QUERY_MEASURES + tuple(CORPUS_MEASURES)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_TOKEN = re.compile(r"\w+|[^\w\s]")


# --- EM / F1 (SQuAD) -----------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop ASCII punctuation and articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check_golds(golds: Sequence[str]) -> None:
    if len(golds) == 0:
        raise ValueError("no gold answer to compare with (queries without answers must be dropped)")


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    _check_golds(golds)
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(gold) for gold in golds))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 of the prediction, the maximum over gold answers."""
    _check_golds(golds)
    pred = normalize_answer(prediction).split()
    return max(_token_f1(pred, normalize_answer(gold).split()) for gold in golds)


# --- BLEU / ROUGE-L (MS MARCO QA) ----------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lowercased words and punctuation marks: the tokens BLEU and ROUGE-L compare."""
    return _TOKEN.findall(text.lower())


def _coco(texts: Sequence[str]) -> list[str]:
    """Texts as the COCO toolkit expects them: tokens joined by single spaces."""
    return [" ".join(tokenize(text)) for text in texts]


def corpus_bleu(
    predictions: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4
) -> list[float]:
    """Corpus BLEU-1..``max_order`` of the official MS MARCO QA evaluation (``pycocoevalcap``).

    Args:
        predictions: one answer per query.
        references: the gold answers of each query (at least one).
        max_order: the largest n-gram order.

    Returns:
        ``[BLEU-1, ..., BLEU-max_order]`` (see the module docstring).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    for golds in references:
        _check_golds(golds)
    from pycocoevalcap.bleu.bleu import Bleu

    keys = range(len(predictions))
    res = {i: [p] for i, p in zip(keys, _coco(predictions))}
    gts = {i: _coco(golds) for i, golds in zip(keys, references)}
    with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its counts
        scores, _ = Bleu(max_order).compute_score(gts, res, verbose=0)
    return [float(score) for score in scores]


def rouge_l(prediction: str, golds: Sequence[str]) -> float:
    """ROUGE-L of the official MS MARCO QA evaluation (``pycocoevalcap``'s ``Rouge``, beta 1.2,
    best precision and best recall over ``golds`` taken separately)."""
    _check_golds(golds)
    from pycocoevalcap.rouge.rouge import Rouge

    return float(Rouge().calc_score(_coco([prediction]), _coco(golds)))


# --- BERTScore -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BertScoreSettings:
    """Where BERTScore's model is and how to run it (``rag.bertscore`` in the config).

    Args:
        model: path of a local Hugging Face model directory; None skips BERTScore.
        num_layers: which hidden layer's embeddings are compared (bert-score's default for
            roberta-large is 17); required because a path carries no default.
        batch_size: sentences per forward pass.
        device: torch device (None lets bert-score pick CUDA when available).
    """

    model: str | None = None
    num_layers: int | None = None
    batch_size: int = 64
    device: str | None = None


def _bertscore_unavailable(settings: BertScoreSettings) -> str | None:
    """Why BERTScore cannot run here, or None when it can."""
    if not settings.model:
        return "no model path given (rag.bertscore.model)"
    if not Path(settings.model).is_dir():
        return f"model directory {settings.model} does not exist (models are never downloaded)"
    try:
        import bert_score  # noqa: F401
    except ImportError:
        return "the bert-score package is not installed"
    return None


def bertscore(
    predictions: Sequence[str], references: Sequence[Sequence[str]], settings: BertScoreSettings
) -> list[float] | None:
    """BERTScore F1 per prediction (maximum over its references), or None when unavailable."""
    reason = _bertscore_unavailable(settings)
    if reason:
        log.warning("BERTScore skipped: %s", reason)
        return None
    if settings.num_layers is None:
        raise ValueError(f"BERTScore with a local model ({settings.model}) needs num_layers")
    for golds in references:
        _check_golds(golds)
    from bert_score import BERTScorer

    scorer = BERTScorer(
        model_type=settings.model,
        num_layers=settings.num_layers,
        batch_size=settings.batch_size,
        device=settings.device,
    )
    _, _, f1 = scorer.score(list(predictions), [list(golds) for golds in references])
    return [float(value) for value in f1]


# --- tables --------------------------------------------------------------------------------

_PER_QUERY_FUNCTIONS = {"EM": exact_match, "F1": token_f1, "ROUGE-L": rouge_l}


@dataclass
class AnswerScores:
    """Scores of one set of predictions: per-query values and corpus-level figures."""

    per_query: pd.DataFrame
    corpus: dict[str, float] = field(default_factory=dict)


def _check_measures(measures: Sequence[str]) -> None:
    unknown = [m for m in measures if m not in ANSWER_MEASURES]
    if unknown:
        raise ValueError(f"unknown answer measure(s) {unknown}; expected some of {ANSWER_MEASURES}")


def score_answers(
    predictions: pd.DataFrame,
    answers: pd.DataFrame,
    measures: Sequence[str],
    bertscore_settings: BertScoreSettings | None = None,
) -> AnswerScores:
    """Score predictions (query_id, prediction) against gold answers (ANSWERS schema).

    The evaluated queries are exactly those of ``answers``: a query without a prediction is
    scored as an empty answer (0 everywhere), so a generator cannot gain by failing on hard
    queries; predictions for queries without gold answers are ignored. Both cases are logged.
    """
    _check_measures(measures)
    golds = answers[answers["answers"].map(len) > 0]
    if len(golds) < len(answers):
        log.warning("%d queries have no gold answer and are not scored", len(answers) - len(golds))
    if golds["query_id"].duplicated().any():
        raise ValueError("answers: duplicate query ids")
    if predictions["query_id"].duplicated().any():
        raise ValueError("predictions: duplicate query ids")
    by_query = dict(zip(predictions["query_id"].astype(str), predictions["prediction"]))
    qids = golds["query_id"].astype(str).tolist()
    missing = sum(q not in by_query for q in qids)
    if missing:
        log.warning(
            "%d of %d queries have no prediction; scored as empty answers", missing, len(qids)
        )
    extra = len(set(by_query) - set(qids))
    if extra:
        log.warning("%d predictions have no gold answer and are ignored", extra)
    preds = [str(by_query.get(q) or "") for q in qids]
    refs = [list(a) for a in golds["answers"]]

    columns: dict[str, list[float]] = {
        m: [_PER_QUERY_FUNCTIONS[m](p, r) for p, r in zip(preds, refs)]
        for m in measures
        if m in _PER_QUERY_FUNCTIONS
    }
    if "BERTScore" in measures:
        values = bertscore(preds, refs, bertscore_settings or BertScoreSettings())
        if values is not None:
            columns["BERTScore"] = values
    per_query = pd.DataFrame(
        [(q, m, v) for m, vals in columns.items() for q, v in zip(qids, vals)],
        columns=schemas.PER_QUERY.names,
    )
    corpus: dict[str, float] = {}
    orders = {m: CORPUS_MEASURES[m] for m in measures if m in CORPUS_MEASURES}
    if orders and qids:
        bleu = corpus_bleu(preds, refs, max(orders.values()))
        corpus = {m: bleu[n - 1] for m, n in orders.items()}
    return AnswerScores(per_query=per_query, corpus=corpus)


def retrieval_recall(
    run: pd.DataFrame, qrels: pd.DataFrame, k: int, query_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-query ``R@k`` (PER_QUERY schema) of the top-k passages fed to the generator.

    Args:
        run: RUN table; its ``rank`` column (not the score) orders each query's list.
        qrels: QRELS table of the evaluated split.
        k: number of passages given to the generator.
        query_ids: the queries the generator answered (e.g. those with gold answers); None
            means every judged query. Queries without any relevant passage have no recall and
            are left out (logged).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if query_ids is not None:
        wanted = set(map(str, query_ids))
        qrels = qrels[qrels["query_id"].astype(str).isin(wanted)]
        unjudged = len(wanted - set(evaluation.judged_queries(qrels)))
        if unjudged:
            log.warning(
                "R@%d: %d queries have no relevant passage and are not counted", k, unjudged
            )
    # ir_measures orders by score; a score of -rank makes it follow the run's own ranks.
    ranked = run.assign(score=-run["rank"].astype(float))
    return evaluation.evaluate_run(ranked, qrels, [f"R@{k}"])


def aggregate(
    per_query: pd.DataFrame,
    corpus: Mapping[str, float],
    *,
    run: str,
    dataset: str,
    split: str,
) -> pd.DataFrame:
    """Rows of the experiment's metrics table: per-query means plus the corpus-level figures."""
    rows = evaluation.aggregate(per_query, run, dataset, split)
    extra = pd.DataFrame(
        [(run, dataset, split, measure, float(value)) for measure, value in sorted(corpus.items())],
        columns=schemas.METRICS.names,
    )
    return pd.concat([rows, extra], ignore_index=True) if len(extra) else rows
