"""The paper's contrastive losses over in-batch plus hard negatives (Eqs. 1-4), and their registry.

One class per file, as in sentence-transformers' ``losses/``: :class:`SingleLH` (Eq. 2),
:class:`Rand1LH`, :class:`JointLH` (Eq. 3), :class:`SumMargLH` (Eq. 4, stable) and
:class:`SumMargLHClamp` (Eq. 4 as the authors clamp it), :class:`LSEPair` (pairwise
log-sum-exp, from the follow-up study of multi-positive losses) and :class:`KLDiv` (the REPLUG
baseline's KL(U || R), App. A.2), all :class:`~utilann.train.losses.base.ContrastiveLoss`
subclasses with a ``compute_loss_from_scores`` that unit tests call without a model.

:data:`LOSSES` is the one list of loss names: a run's ``loss`` setting must be one of them
(:class:`utilann.train.settings.TrainSettings` checks it), and :func:`build_loss` instantiates
one. The registry imports no torch, because the Snakefile validates every run's settings at
parse time; a loss class is imported when it is first built or imported from here. Adding a
loss = its class in its own module + one :func:`register_loss` call or :data:`LOSSES` line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from utilann.train.losses.base import ContrastiveLoss, Similarity


@dataclass(frozen=True)
class LossEntry:
    """Where a loss class lives and what its batches must look like.

    Attributes:
        target: ``"package.module:ClassName"`` of a :class:`ContrastiveLoss` subclass.
        single_positive: the loss scores one positive per group, so the batch builder must
            use ``positive_sampling: single`` (one positive, the rest negatives).
        utility: the loss reads each group's teacher utilities (a distribution over the
            passages, label source ``replug``) instead of positive flags.
    """

    target: str
    single_positive: bool
    utility: bool = False

    def load(self) -> type[ContrastiveLoss]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


LOSSES: dict[str, LossEntry] = {
    "SingleLH": LossEntry("utilann.train.losses.single:SingleLH", single_positive=True),
    "Rand1LH": LossEntry("utilann.train.losses.rand1:Rand1LH", single_positive=True),
    "JointLH": LossEntry("utilann.train.losses.joint:JointLH", single_positive=False),
    "SumMargLH": LossEntry("utilann.train.losses.sum_marg:SumMargLH", single_positive=False),
    "SumMargLHClamp": LossEntry(
        "utilann.train.losses.sum_marg_clamp:SumMargLHClamp", single_positive=False
    ),
    "LSEPair": LossEntry("utilann.train.losses.lse_pair:LSEPair", single_positive=False),
    "KLDiv": LossEntry("utilann.train.losses.kl_div:KLDiv", single_positive=False, utility=True),
}
"""Loss name (the ``loss`` run setting, the paper's name) -> :class:`LossEntry`."""


def register_loss(name: str, target: str, *, single_positive: bool, utility: bool = False) -> None:
    """Add a loss to :data:`LOSSES` (e.g. from a plugin or a test); names are unique."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is already registered ({LOSSES[name].target})")
    LOSSES[name] = LossEntry(target, single_positive=single_positive, utility=utility)


def build_loss(
    name: str, similarity: Similarity | None = None, gather_across_devices: bool = False
) -> ContrastiveLoss:
    """Instantiate a loss by its name, with a clear error for an unknown one.

    ``similarity`` defaults to the raw dot product
    (:func:`~utilann.train.losses.base.dot_product`).
    """
    try:
        cls = LOSSES[name].load()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}") from None
    if similarity is None:
        return cls(gather_across_devices=gather_across_devices)
    return cls(similarity=similarity, gather_across_devices=gather_across_devices)


_EXPORTS = {
    **{name: entry.target for name, entry in LOSSES.items()},
    "ContrastiveLoss": "utilann.train.losses.base:ContrastiveLoss",
    "dot_product": "utilann.train.losses.base:dot_product",
    "gather_with_grad": "utilann.train.losses.base:gather_with_grad",
    "group_targets": "utilann.train.losses.base:group_targets",
}


def __getattr__(name: str) -> Any:
    """Import the torch side (loss classes, helpers) on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "JointLH",
    "KLDiv",
    "LSEPair",
    "LossEntry",
    "Rand1LH",
    "SingleLH",
    "SumMargLH",
    "SumMargLHClamp",
    "build_loss",
    "dot_product",
    "gather_with_grad",
    "group_targets",
    "register_loss",
]
