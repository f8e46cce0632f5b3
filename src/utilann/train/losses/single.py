"""SingleLH (paper Eq. 2): the likelihood of one positive per query."""

from __future__ import annotations

import torch
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss


class SingleLH(ContrastiveLoss):
    """SingleLH (Eq. 2): ``-log P(d+ | q)`` for one positive per query.

    The batch builder puts exactly one positive in each group (``single``). Should a row mark
    several, only its first positive column counts and the others stay in the denominator, as
    the authors' ``softmax`` loss always targets the first passage of each group ("First1LH").
    Used for the Human baseline and for the curriculum's second stage.
    """

    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        first = targets_mask.int().argmax(dim=1)
        return torch.logsumexp(scores, dim=1) - scores.gather(1, first[:, None]).squeeze(1)
