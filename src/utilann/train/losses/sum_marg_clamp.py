"""SumMargLH as the authors compute it: a clamped probability mass (bi-encode/modeling.py)."""

from __future__ import annotations

import torch
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss

CLAMP_MIN = 1e-9
"""The floor of the positives' mass in the authors' ``myloss``."""


class SumMargLHClamp(ContrastiveLoss):
    """SumMargLH (Eq. 4) the authors' way: ``-log(clamp(sum_{d+} softmax(s)_d, 1e-9, 1))``.

    Equal to :class:`~utilann.train.losses.sum_marg.SumMargLH` while the positives' mass
    ``P(D+)`` is at least 1e-9. Below it the loss is the constant ``-log 1e-9 = 20.72`` and its
    gradient is exactly zero: a row whose positives the retriever finds hopeless (most likely
    false LLM positives) stops contributing, where SumMargLH keeps pulling with the full
    gradient ``p_d - p_d / P(D+)``. Offered to reproduce the paper's numbers and to study that
    implicit filter; ``SumMargLH`` is the default.
    """

    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        mass = (torch.softmax(scores, dim=1) * targets_mask).sum(dim=1)
        return -torch.log(torch.clamp(mass, min=CLAMP_MIN, max=1.0))
