"""The Parquet schema of every artifact, declared once.

Ids are always strings (MS MARCO and BEIR ids look numeric but are not: leading zeros and
mixed ids exist), so that joins across artifacts never silently fail on a dtype mismatch.
``docs/artifacts.md`` documents each column for users who open the files with pandas/duckdb.
"""

from __future__ import annotations

import pyarrow as pa

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
"""One row per passage; a corpus is a directory of ``shard-NNNNN.parquet`` files."""

QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string())])
"""One row per query, all splits together (a query's split is given by the qrels)."""

QRELS = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("relevance", pa.int32()),
        ("split", pa.string()),
    ]
)
"""Human judgements; ``relevance`` keeps the original grade (0-3 for TREC DL)."""

ANSWERS = pa.schema([("query_id", pa.string()), ("answers", pa.list_(pa.string()))])
"""Gold short answers for QA datasets (NQ-open, HotpotQA, MS MARCO QA)."""

NEGATIVES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("rank", pa.int32())])
"""Hard negatives shipped with a dataset (Tevatron files), in file order; empty otherwise."""

RUN = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
    ]
)
"""A ranked list per query (rank starts at 1), also written in TREC format beside it."""

POOLS = pa.schema(
    [
        ("query_id", pa.string()),
        ("query", pa.string()),
        ("position", pa.int32()),
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("is_human_positive", pa.bool_()),
        ("source", pa.string()),
        ("source_rank", pa.int32()),
    ]
)
"""Annotation candidate pools: per query its human positive(s) then n hard negatives.

``position`` is the 0-based order of the passage in the pool (human positives first, as in the
authors' files); ``source`` says where the passage came from (``human``, ``pseudo`` for the
source passage of a generated query, ``oracle`` for a stand-in human's label, ``bm25`` or
``file``, ``qrels`` for a judged passage of a graded calibration set) and ``source_rank``
its rank there (0 for a positive placed first; a ``qrels`` passage: its grade). Passage text is
stored here so that an annotation shard is self-contained and its cache keys can hash the
exact text shown.
"""

PER_QUERY = pa.schema(
    [("query_id", pa.string()), ("measure", pa.string()), ("value", pa.float64())]
)
"""Per-query metric values of one run on one dataset split."""

METRICS = pa.schema(
    [
        ("run", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("measure", pa.string()),
        ("value", pa.float64()),
    ]
)
"""Aggregate figures: one row per (run, dataset, split, measure)."""

LABELS = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("is_human_positive", pa.bool_()),
        ("strategy", pa.string()),
        ("selected", pa.bool_()),
        ("rank", pa.int32()),
        ("list_length", pa.int32()),
    ]
)
"""LLM annotation labels: one row per (query, pool passage, strategy).

``strategy`` is ``relsel``, ``utilsel`` or ``utilrank``. For the selection strategies
``selected`` is the label. For ``utilrank``, ``rank`` is the 1-based utility rank among the
``list_length`` RelSel-selected passages shown to the ranker (null when the passage was not
ranked), so that any threshold k % can be cut later without another LLM call
(:func:`utilann.labels.derive_positives`). Model, prompt version and sampling parameters are
in the file's metadata.
"""

GENERATIONS = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_ids", pa.list_(pa.string())),
        ("prediction", pa.string()),
        ("raw_output", pa.string()),
        ("prompt_key", pa.string()),
    ]
)
"""RAG answers: one row per query of one retrieval run on one dataset split.

``doc_ids`` are the top-k passages fed to the generator, in rank order; ``raw_output`` is the
LLM text as returned and ``prediction`` the cleaned answer that is scored
(:func:`utilann.rag.job.clean_prediction`). ``prompt_key`` is the request's key in the LLM
cache (:func:`utilann.llm.cache.request_key`: model and revision, engine, template, sampling
parameters and the exact conversation), so a rerun reuses answers already paid for. Template
name, version and hash, model and sampling parameters are in the file's metadata.
"""

SIGNIFICANCE = pa.schema(
    [
        ("run", pa.string()),
        ("baseline", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("measure", pa.string()),
        ("n_queries", pa.int64()),
        ("mean", pa.float64()),
        ("baseline_mean", pa.float64()),
        ("delta", pa.float64()),
        ("t", pa.float64()),
        ("p_value", pa.float64()),
        ("significant", pa.bool_()),
        ("marker", pa.string()),
    ]
)
"""Paired two-sided t-tests of each run against a baseline (:mod:`utilann.significance`)."""

# --- training / dense stage ---

TRAINSET = pa.schema(
    [
        ("query_id", pa.string()),
        ("query", pa.string()),
        ("position", pa.int32()),
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("positive", pa.bool_()),
        ("is_human_positive", pa.bool_()),
        ("utility", pa.float64()),
    ]
)
"""One run's training labels: per training query, its pool passages marked positive or not.

Rows not marked ``positive`` are the query's hard negatives. Passages removed by the
``exclusion`` policy are absent. ``utility`` is the REPLUG teacher's ``U`` of the passage (label
source ``replug``: a softmax over the query's pool of the LM's log-likelihood of the gold answer
given the passage, summing to 1 per query; its top passage is the ``positive``), null for the
other label sources. The label settings and counts (queries dropped for lack of a positive,
mean positives, recall of the human positive) are in the file's metadata.
"""

REPLUG_SCORES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("answer", pa.string()),
        ("answer_tokens", pa.int32()),
        ("logprob", pa.float64()),
        ("cache_key", pa.string()),
    ]
)
"""REPLUG's answer likelihoods: one row per (training query with a gold answer, pool passage).

``logprob`` is ``log P(answer | query, passage)``, the sum of the ``answer_tokens`` token
log-probabilities of the gold ``answer`` as the LM's reply to a RAG prompt showing the passage
(:mod:`utilann.replug`); ``position`` is the passage's place in the pool; ``cache_key`` the
scoring request's key in the LLM cache. Model, revision, prompt and counts (queries without an
answer, prompts too long to score) are in the file's metadata.
"""

LOSS_CURVE = pa.schema(
    [
        ("step", pa.int32()),
        ("epoch", pa.int32()),
        ("loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("queries", pa.int32()),
        ("passages", pa.int32()),
        ("elapsed_s", pa.float64()),
    ]
)
"""One row per optimiser step of a training run (global batch; ``elapsed_s`` since start)."""

EMBEDDINGS = pa.schema([("doc_id", pa.string()), ("embedding", pa.large_list(pa.float32()))])
"""Dense passage vectors of one corpus encode shard (row order = corpus order).

``large_list`` (64-bit offsets): a shard of MS MARCO holds more than 2^31 floats.
"""

RAW = pa.schema(
    [
        ("query_id", pa.string()),
        ("step", pa.string()),
        ("window", pa.int32()),
        ("doc_ids", pa.list_(pa.string())),
        ("cache_key", pa.string()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("gen_seconds", pa.float64()),
        ("from_cache", pa.bool_()),
        ("parse_status", pa.string()),
        ("parse_issues", pa.list_(pa.string())),
        ("parsed_doc_ids", pa.list_(pa.string())),
        ("answer", pa.string()),
    ]
)
"""Raw LLM outputs of the annotation cascade: one row per LLM call.

``step`` is ``relsel``, ``answer``, ``utilsel`` or ``utilrank``; ``window`` numbers the RelSel
windows of a query (0 for the other steps); ``doc_ids`` are the passages shown, in prompt order
(passage [i] is ``doc_ids[i-1]``). ``text`` is the untouched completion; ``parse_status`` is
``ok``/``repaired``/``failed`` with the reasons in ``parse_issues``; ``parsed_doc_ids`` is the
selection or ranking read from it and ``answer`` the cleaned pseudo-answer (``answer`` rows).
``cache_key`` is the content key of the request in the LLM cache, ``from_cache`` whether this
run served it from there, and ``gen_seconds`` the engine time the call cost when generated (its
token share of its batch).
"""

ANNOTATION_REPORT = pa.schema(
    [
        ("name", pa.string()),
        ("strategy", pa.string()),
        ("threshold", pa.float64()),
        ("queries", pa.int64()),
        ("human_positives", pa.int64()),
        ("positives", pa.int64()),
        ("avg_positives", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("empty_queries", pa.int64()),
        ("calls", pa.int64()),
        ("failed_parses", pa.int64()),
        ("repaired_parses", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("wall_seconds", pa.float64()),
        ("tokens_per_second", pa.float64()),
    ]
)
"""Annotation quality and cost per strategy (the paper's Table 1), one row per strategy.

``name`` is ``relsel``, ``utilsel`` or ``utilrank@<k>`` (``threshold`` = k %). Precision and
recall are micro-averaged against the human positives of the pools, over all annotated queries;
``avg_positives`` is per annotated query; ``empty_queries`` have no positive (training's
``empty_policy`` drops or keeps them).
``calls``/``failed_parses``/``repaired_parses`` count the strategy's own LLM step; tokens and
``wall_seconds`` (engine time) add up every step the strategy needs (RelSel, then the
pseudo-answer and the utility step).
"""

# --- new-corpus mode: generated queries, the human share ---

_CALIBRATION_RUN = [("set", pa.string()), ("order_seed", pa.int64())]

CALIBRATION_LABELS = pa.schema(_CALIBRATION_RUN + list(zip(LABELS.names, LABELS.types)))
"""Labels of the annotation calibration (LABELS, per calibration set and display order).

``set`` names the calibration set (``annotation.calibration.sets``), ``order_seed`` the seed
of the shuffled display order it was judged in; ``is_human_positive`` is the binarised human
judgement (a training pool's human positive; a graded set's grade >= ``min_relevance``).
"""

CALIBRATION_RAW = pa.schema(_CALIBRATION_RUN + list(zip(RAW.names, RAW.types)))
"""Every LLM call of the annotation calibration (RAW, per calibration set and order)."""

CALIBRATION_REPORT = pa.schema(
    [
        ("set", pa.string()),
        ("name", pa.string()),
        ("strategy", pa.string()),
        ("queries", pa.int64()),
        ("orders", pa.int64()),
        ("human_positives", pa.int64()),
        ("positives", pa.int64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("kappa", pa.float64()),
        ("order_jaccard", pa.float64()),
        ("first_position_rate", pa.float64()),
        ("other_position_rate", pa.float64()),
        ("calls", pa.int64()),
        ("failed_parses", pa.int64()),
        ("repaired_parses", pa.int64()),
        ("parse_rate", pa.float64()),
        ("prompt_tokens_per_call", pa.float64()),
        ("output_tokens_per_call", pa.float64()),
    ]
)
"""The judge against human judgements before the full annotation, one row per (set, strategy).

Every figure pools the set's queries under all display orders (``orders``): ``human_positives``
and ``positives`` count (query, passage, order) triples; precision/recall of the human positive
as in ANNOTATION_REPORT (Table 1); ``kappa`` is Cohen's kappa of the strategy's positives
against the binarised human labels over every pool passage; ``order_jaccard`` the mean, over
queries and pairs of orders, of the Jaccard overlap of the positives; ``first_position_rate``
and ``other_position_rate`` the strategy's own step's selection rate at display position 1
and at the other positions (a ranking: ranked first); ``parse_rate`` the share of the own
step's calls that did not fail to parse; tokens per call of the own step.
"""

CALIBRATION_POSITIONS = pa.schema(
    [
        ("set", pa.string()),
        ("step", pa.string()),
        ("position", pa.int64()),
        ("shown", pa.int64()),
        ("chosen", pa.int64()),
        ("rate", pa.float64()),
    ]
)
"""Position bias: per calibration set, step and 1-based display position, the passages shown
there and how many were chosen (selected; for a ranking step, ranked first), over all orders."""

GENERATED_QUERIES = pa.schema(
    [
        ("query_id", pa.string()),
        ("origin", pa.string()),
        ("source_doc_id", pa.string()),
        ("text", pa.string()),
        ("raw_text", pa.string()),
        ("status", pa.string()),
        ("self_check", pa.string()),
        ("round_trip_rank", pa.int32()),
        ("cache_key", pa.string()),
        ("from_cache", pa.bool_()),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("gen_seconds", pa.float64()),
    ]
)
"""Candidate training queries of the new-corpus mode, kept or not, one row each.

``origin`` is ``generated`` (written by the LLM for ``source_doc_id``) or ``unlabelled`` (a
query of the dataset without judgements, taken as is). ``status`` is ``kept`` or the first
filter that removed the query (:data:`utilann.newcorpus.filters.STATUSES`); ``raw_text`` is the
untouched completion and ``text`` the cleaned query; ``self_check`` the LLM's raw reply to the
optional self-check (null when it did not run); ``round_trip_rank`` the source passage's BM25
rank for the query (null: not in the top k, or not checked). ``cache_key`` .. ``gen_seconds``
describe the generation call as in RAW.
"""

SELECTION = pa.schema(
    [
        ("query_id", pa.string()),
        ("origin", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int32()),
        ("selected", pa.bool_()),
    ]
)
"""Which queries of the selection population get human labels (one training run's share).

``score`` is the selector's uncertainty (higher = asked first; null for ``random``), ``rank``
the 1-based order in which queries would be asked, ``selected`` the budget's share of them.
Selector, ratio, seed and population are in the metadata.
"""

CONFIDENCE = pa.schema(
    [
        ("query_id", pa.string()),
        ("step", pa.string()),
        ("calls", pa.int32()),
        ("scored", pa.int32()),
        ("answer_tokens", pa.int32()),
        ("logprob", pa.float64()),
        ("mean_logprob", pa.float64()),
    ]
)
"""The annotator's confidence in its own answers, one row per query of the selection
population (rule ``judge_confidence``, :mod:`utilann.evidence`).

``step`` is the judged step, ``calls`` its calls for the query, ``scored`` those with a
non-empty answer that fit the context, ``answer_tokens`` and ``logprob`` the scored answers'
tokens and summed log-probability (each answer given its own prompt), ``mean_logprob`` their
ratio (null when nothing was scored).
"""

FEW_SHOT = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("query", pa.string()),
        ("passage", pa.string()),
    ]
)
"""Few-shot examples of query generation, in prompt order: a passage and a question it answers.

Written by the user (``query_id``/``doc_id`` null) or drawn from a labelled dataset (its query
and one of its positive passages, as ``title text``).
"""

# --- audits of the annotator: false negatives, injection robustness ---

AUDIT_NEGATIVES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("position", pa.int32()),
        ("is_human_positive", pa.bool_()),
        ("useful", pa.bool_()),
        ("parse_status", pa.string()),
        ("answer_source", pa.string()),
    ]
)
"""The false-negative audit's judgements: one row per pool passage of an audited query.

``useful``: the UtilSel judge selected it (false where its call failed to parse:
``parse_status`` ``failed`` rows have no judgement); ``answer_source``: the reference answer
of the query's calls, ``cascade`` (the annotation's pseudo-answer), ``human_positive``
(written from the human positive by the pseudo-answer step) or ``none``.
"""

AUDIT_SUMMARY = pa.schema(
    [
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("queries", pa.int64()),
        ("negatives", pa.int64()),
        ("judged_useful", pa.int64()),
        ("fn_rate", pa.float64()),
        ("fn_low", pa.float64()),
        ("fn_high", pa.float64()),
        ("human_positives", pa.int64()),
        ("human_found", pa.float64()),
        ("unjudged", pa.int64()),
        ("cascade_answers", pa.int64()),
    ]
)
"""The false-negative rate per training dataset: ``judged_useful`` of ``negatives`` (BM25
hard negatives whose call parsed), its 95 % Wilson interval ``fn_low``-``fn_high``; the share
of human positives the judge selected; passages left unjudged (failed parses); queries whose
reference answer was the cascade's pseudo-answer."""

INJECTION = pa.schema(
    [
        ("step", pa.string()),
        ("query_id", pa.string()),
        ("attack", pa.string()),
        ("kind", pa.string()),
        ("target_doc_id", pa.string()),
        ("target_index", pa.int32()),
        ("pool_size", pa.int32()),
        ("target_selected", pa.bool_()),
        ("selected", pa.int32()),
        ("human_selected", pa.bool_()),
        ("parse_status", pa.string()),
    ]
)
"""One row per (step, query, attack) call of the injection audit.

Each query's pool holds its human positive, BM25 negatives and one *target*: a passage of
another query's pool. ``attack`` ``none`` is the control (the target unchanged); every other
attack carries that attack template's instruction in the target, at the same display index
``target_index`` (1-based) of the same pool. ``target_selected``: the step selected the target
(false when the answer failed to parse); ``selected``: passages selected in all;
``human_selected``: the human positive was among them.
"""

INJECTION_SUMMARY = pa.schema(
    [
        ("step", pa.string()),
        ("attack", pa.string()),
        ("kind", pa.string()),
        ("pools", pa.int64()),
        ("target_rate", pa.float64()),
        ("target_low", pa.float64()),
        ("target_high", pa.float64()),
        ("control_rate", pa.float64()),
        ("lift", pa.float64()),
        ("only_attack", pa.int64()),
        ("only_control", pa.int64()),
        ("p_value", pa.float64()),
        ("human_rate", pa.float64()),
        ("failed_parses", pa.int64()),
    ]
)
"""Per step and attack: the rate at which the target passage was selected (95 % Wilson
interval) against the control's rate over the same pools (``lift`` = difference), the
discordant pairs (selected only with / only without the instruction) and the exact McNemar
p-value; the human positive's selection rate and the failed parses under that attack."""
