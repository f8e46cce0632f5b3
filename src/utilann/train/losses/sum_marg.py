"""SumMargLH (paper Eq. 4, the paper's proposal): the summed likelihood of the positives."""

from __future__ import annotations

import torch
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss


class SumMargLH(ContrastiveLoss):
    """SumMargLH (Eq. 4, the paper's proposal): ``-log sum_{d+} P(d+ | q)``.

    Computed as ``logsumexp(scores over positives) - logsumexp(scores)``, which is exact where
    the authors' ``-log(clamp(sum(softmax * target), 1e-9, 1))`` underflows (that form is
    :class:`~utilann.train.losses.sum_marg_clamp.SumMargLHClamp`). The gradient on a positive's
    logit is ``p_d - p_d / P(D+)``: the pull spreads over positives in proportion to their
    probability, so the set only needs to carry the mass and noisy positives hurt less. It is
    the full gradient at any ``P(D+)``, also below the authors' clamp, where theirs is zero.
    """

    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        masked = scores.masked_fill(~targets_mask, float("-inf"))
        return torch.logsumexp(scores, dim=1) - torch.logsumexp(masked, dim=1)
