"""The settings of one training run, split by the rule that uses them.

Kept free of torch/transformers imports (the loss registry is too): the Snakefile resolves every
run's settings at parse time (:mod:`utilann.train.spec`), and that must stay fast. The defaults
are the paper's (App. D.2, else the authors' run.sh); ``config/schema.yaml`` repeats them as
JSON-schema defaults, and a unit test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from utilann.annotate.steps import strategies, uses_threshold
from utilann.hardware import PRECISIONS
from utilann.replug import SCORES as REPLUG_SCORES
from utilann.selection import SELECTORS
from utilann.train.losses import LOSSES

HUMAN_POSITIVE_POLICIES = ("random", "exclusion", "inclusion")
EMPTY_POLICIES = ("drop", "keep", "human")
POSITIVE_SAMPLING = ("single", "pos_one", "pos_all", "pos_avg")
POOLINGS = ("cls", "mean")
REPLUG = "replug"
"""The label source of the REPLUG baseline: the LM's answer likelihood per pool passage
(:mod:`utilann.replug`), a utility distribution instead of positives (paper App. A.2)."""


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def label_sources() -> tuple[str, ...]:
    """``human`` (the pools' human positives), any annotation strategy of the registry, or
    ``replug`` (the LM's utility distribution over the pool)."""
    return ("human", *strategies(), REPLUG)


@dataclass(frozen=True)
class TrainsetSettings:
    """Label-side settings of one run (the ``build_trainset`` rule's params).

    Attributes:
        label_source: ``human`` (the pools' human positives), an LLM strategy, or ``replug``
            (the REPLUG baseline: every pool passage gets the utility ``U``, a softmax over
            the pool of the LM's log-likelihood of the gold answer given the passage; the
            passage with the highest ``U`` is the positive).
        utilrank_threshold: k % of the RelSel list that UtilRank keeps; used only by label
            sources cut by a threshold (:func:`utilann.annotate.steps.uses_threshold`), see
            :attr:`threshold`.
        human_positive: ``random`` (the human passage is a positive only if the LLM chose it),
            ``exclusion`` (removed from the query's training passages), ``inclusion`` (always a
            positive); paper App. B.1.
        union_ratio: Positive Union baseline: for this seeded fraction of queries the positives
            are LLM + human positives (paper Table 6).
        query_ratio: seeded fraction of the pool's queries to train on (a curriculum stage 2 on
            20 % of the human labels uses 0.2).
        query_selection: how that fraction of a ``human`` run is chosen: ``random`` (seeded,
            the paper) or a selector of :data:`utilann.selection.SELECTORS` that asks for
            human labels where the LLM annotator is unsure (active selection).
        empty_policy: queries left without a positive are dropped (``drop``, counted), kept
            for the losses to skip (``keep``), or given their human positive(s) instead
            (``human``, counted): the paper does not say; the authors' notebook (process.ipynb)
            shows thousands of them.
        seed: seed of the query fractions. The same seed picks the same queries in every run,
            so "the 20 % human-labelled queries" are one set across CL and Positive Union.
        replug_temperature: ``U = softmax(score / replug_temperature)`` over the pool (the
            paper does not state it; 1 makes ``U`` the posterior ``P(a|q,d) / sum P(a|q,d')``
            of a uniform prior); used by label source ``replug`` only, see
            :attr:`replug_settings`.
        replug_score: ``sum`` (the answer's log-likelihood) or ``mean`` (per answer token).
            Every passage of a query scores the same answer tokens, so ``mean`` is a
            per-query temperature ``len(answer) x replug_temperature``: it keeps ``U`` of a
            long answer from collapsing onto one passage.
    """

    label_source: str = "human"
    utilrank_threshold: float | None = 10.0
    human_positive: str = "random"
    union_ratio: float = 0.0
    query_ratio: float = 1.0
    query_selection: str = "random"
    empty_policy: str = "drop"
    seed: int = 42
    replug_temperature: float | None = 1.0
    replug_score: str | None = "sum"

    def __post_init__(self) -> None:
        _check_choice("label_source", self.label_source, label_sources())
        if uses_threshold(self.label_source) and self.utilrank_threshold is None:
            raise ValueError(f"label_source {self.label_source!r} needs a utilrank_threshold")
        _check_choice("human_positive", self.human_positive, HUMAN_POSITIVE_POLICIES)
        _check_choice("empty_policy", self.empty_policy, EMPTY_POLICIES)
        if self.label_source == "human" and (
            self.human_positive != "random" or self.union_ratio > 0
        ):
            raise ValueError(
                "human_positive and union_ratio apply to LLM label sources only; with "
                "label_source 'human' keep human_positive 'random' and union_ratio 0"
            )
        if self.empty_policy == "human" and self.human_positive == "exclusion":
            raise ValueError(
                "empty_policy 'human' gives the human positive back, human_positive "
                "'exclusion' removes it: choose one"
            )
        if self.union_ratio > 0 and self.human_positive != "random":
            raise ValueError("Positive Union (union_ratio > 0) needs human_positive 'random'")
        if not 0 < self.query_ratio <= 1 or not 0 <= self.union_ratio <= 1:
            raise ValueError("query_ratio must be in (0, 1] and union_ratio in [0, 1]")
        _check_choice("query_selection", self.query_selection, tuple(SELECTORS))
        if self.query_selection != "random" and (
            self.label_source != "human" or self.query_ratio >= 1
        ):
            raise ValueError(
                f"query_selection {self.query_selection!r} chooses the human-labelled share of "
                "the queries: it needs label_source 'human' and a query_ratio below 1"
            )
        if self.label_source == REPLUG:
            if self.replug_temperature is None or not self.replug_temperature > 0:
                raise ValueError("label_source 'replug' needs a replug_temperature > 0")
            _check_choice("replug_score", str(self.replug_score), REPLUG_SCORES)
            if self.human_positive != "random" or self.union_ratio > 0:
                raise ValueError(
                    "human_positive and union_ratio apply to annotation label sources, not to "
                    "'replug' (its labels are a distribution over the whole pool)"
                )

    @property
    def needs_labels(self) -> bool:
        """Whether the LLM annotation labels table is an input of this training set."""
        return self.label_source not in ("human", REPLUG)

    @property
    def needs_replug(self) -> bool:
        """Whether the REPLUG answer likelihoods are an input of this training set."""
        return self.label_source == REPLUG

    @property
    def replug_settings(self) -> dict[str, float | str | None]:
        """``replug_temperature`` and ``replug_score``, None where the label source is not
        ``replug`` (so that changing them rebuilds only the REPLUG training sets)."""
        if not self.needs_replug:
            return {"replug_temperature": None, "replug_score": None}
        return {"replug_temperature": self.replug_temperature, "replug_score": self.replug_score}

    @property
    def threshold(self) -> float | None:
        """The cut k % this label source uses, or None when it is not cut by one."""
        return self.utilrank_threshold if uses_threshold(self.label_source) else None


@dataclass(frozen=True)
class TrainSettings:
    """Model and optimisation settings of one run (the ``train`` rule's params).

    Attributes:
        pooling, normalize, temperature: the bi-encoder
            (:class:`~utilann.train.model.BiEncoderConfig`).
        passage_title, passage_separator: how a passage becomes the text the encoder reads,
            ``title + separator + text`` or the text alone
            (:func:`utilann.passages.format_passage`); the same for the training passages and
            for encoding every corpus with this run's model, so the two cannot disagree.
        query_max_len, passage_max_len: token caps at training time.
        loss: a name in the loss registry (:data:`utilann.train.losses.LOSSES`);
            positive_sampling: one of :data:`POSITIVE_SAMPLING`.
        lr, epochs, warmup_ratio, weight_decay, max_grad_norm: AdamW with a linear schedule
            (warmup as a fraction of all steps); the gradient clip is HF Trainer's default.
        batch_size: queries per device; group_size: passages per query (positives + negatives).
        precision: ``auto`` (bf16 autocast where the device computes bf16 natively, else
            fp32), ``fp32``, ``bf16`` or ``fp16`` (CUDA only, with loss scaling); resolved per
            machine at job time by :func:`utilann.hardware.resolve_precision`.
        negatives_x_device: under torchrun, score against all devices' passages.
    """

    pooling: str = "cls"
    normalize: bool = False
    temperature: float = 1.0
    passage_title: bool = True
    passage_separator: str = " "
    query_max_len: int = 32
    passage_max_len: int = 140
    loss: str = "SumMargLH"
    positive_sampling: str = "pos_all"
    lr: float = 3e-5
    epochs: int = 2
    batch_size: int = 16
    group_size: int = 16
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "auto"
    seed: int = 42
    negatives_x_device: bool = False

    def __post_init__(self) -> None:
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("loss", self.loss, tuple(LOSSES))
        _check_choice("positive_sampling", self.positive_sampling, POSITIVE_SAMPLING)
        _check_choice("precision", self.precision, PRECISIONS)
        if LOSSES[self.loss].single_positive and self.positive_sampling != "single":
            raise ValueError(
                f"{self.loss} scores one positive per group: use positive_sampling 'single' "
                f"(one positive, the rest negatives; got {self.positive_sampling!r}). "
                "'pos_one' also draws the query's other positives into the group (the paper's "
                "Pos-one, App. B.2), where a single-positive loss would count them as negatives"
            )
        if not self.passage_separator:
            raise ValueError("passage_separator must not be empty (title and text would merge)")
        if self.epochs < 1 or self.batch_size < 1 or self.group_size < 2:
            raise ValueError("epochs and batch_size must be >= 1 and group_size >= 2")
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError("temperature and lr must be > 0")
