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
from utilann.selection import SELECTORS
from utilann.train.losses import LOSSES

HUMAN_POSITIVE_POLICIES = ("random", "exclusion", "inclusion")
EMPTY_POLICIES = ("drop", "keep", "human")
POSITIVE_SAMPLING = ("pos_one", "pos_all", "pos_avg")
POOLINGS = ("cls", "mean")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def label_sources() -> tuple[str, ...]:
    """``human`` (the pools' human positives) or any annotation strategy of the registry."""
    return ("human", *strategies())


@dataclass(frozen=True)
class TrainsetSettings:
    """Label-side settings of one run (the ``build_trainset`` rule's params).

    Attributes:
        label_source: ``human`` (the pools' human positives) or an LLM strategy.
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
    """

    label_source: str = "human"
    utilrank_threshold: float | None = 10.0
    human_positive: str = "random"
    union_ratio: float = 0.0
    query_ratio: float = 1.0
    query_selection: str = "random"
    empty_policy: str = "drop"
    seed: int = 42

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

    @property
    def needs_labels(self) -> bool:
        """Whether the LLM labels table is an input of this training set."""
        return self.label_source != "human"

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
        if LOSSES[self.loss].single_positive and self.positive_sampling != "pos_one":
            raise ValueError(
                f"{self.loss} scores one positive per group: use positive_sampling 'pos_one' "
                f"(got {self.positive_sampling!r})"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.group_size < 2:
            raise ValueError("epochs and batch_size must be >= 1 and group_size >= 2")
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError("temperature and lr must be > 0")
