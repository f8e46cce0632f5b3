"""LSEPair: a pairwise log-sum-exp loss over every (positive, negative) pair of a query."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss


class LSEPair(ContrastiveLoss):
    """LSEPair: ``log(1 + sum_{d+ in D+} sum_{d- in D-} exp(s(q, d-) - s(q, d+)))``.

    A smooth maximum over all positive/negative margins (the pairwise log-sum-exp of circle
    loss and of the multi-positive study that follows the paper, which finds it more robust to
    noisy LLM positives than SumMargLH). The double sum factorises,
    ``sum_+ sum_- exp(s_- - s_+) = (sum_- exp s_-) (sum_+ exp -s_+)``, so the loss is
    ``softplus(logsumexp_-(s) + logsumexp_+(-s))``: linear in the number of passages and
    stable for any score range. ``D-`` is every passage of the row that is not a positive
    (hard and in-batch negatives).

    Unlike SumMargLH, every positive is pushed above every negative, but through a soft
    minimum over positives (``-logsumexp_+(-s)``): the gradient concentrates on the positives
    that are scored lowest relative to the negatives, weighted by how badly they lose.
    A row without any negative has nothing to rank against and contributes 0.
    """

    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        neg_inf = torch.finfo(scores.dtype).min
        negatives = torch.logsumexp(scores.masked_fill(targets_mask, neg_inf), dim=1)
        positives = torch.logsumexp((-scores).masked_fill(~targets_mask, neg_inf), dim=1)
        has_negative = (~targets_mask).any(dim=1)
        return torch.where(has_negative, F.softplus(negatives + positives), scores.new_zeros(()))
