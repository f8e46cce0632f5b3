"""JointLH (paper Eq. 3): every positive of a query pushed up on its own."""

from __future__ import annotations

import torch
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss


class JointLH(ContrastiveLoss):
    """JointLH (Eq. 3): ``-sum_{d+} log P(d+ | q)``, every positive pushed up separately.

    Summed, not averaged, over a row's positives (the authors' ``multi-softmax``). Each positive
    gets the same pull of -1 on its logit, so one false positive costs as much as a true one.
    """

    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        lse = torch.logsumexp(scores, dim=1)
        n_pos = targets_mask.sum(dim=1)
        pos_sum = torch.where(targets_mask, scores, torch.zeros_like(scores)).sum(dim=1)
        return n_pos * lse - pos_sum
