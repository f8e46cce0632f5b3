"""KLDiv: REPLUG's loss, the retriever's distribution over a query's list fitted to the LM's."""

from __future__ import annotations

import torch
from torch import Tensor

from utilann.train.losses.base import ContrastiveLoss


class KLDiv(ContrastiveLoss):
    """REPLUG (paper App. A.2, D.2): ``KL(U || R) = sum_i U(d_i) log(U(d_i) / R(d_i))``.

    ``U`` is the teacher's utility distribution over the query's list: the softmax of the LM's
    likelihood of the gold answer given each passage (label source ``replug``, built by
    :mod:`utilann.replug` and :func:`utilann.train.data.build_trainset`). ``R`` is the
    retriever's softmax over the *same* list, its own group only: unlike the contrastive
    losses there are no in-batch negatives (REPLUG's LSR loss compares two distributions over
    one retrieved list), so ``gather_across_devices`` has nothing to gather and is ignored.

    The trainset stores ``U`` over the whole pool; a group holds a sample of the pool, and
    ``U`` restricted to it and renormalised is exactly the softmax over that sample, so
    :meth:`compute_loss_from_scores` renormalises each row. ``U`` is fixed, so the gradient on
    the scores is ``R - U``: passages the LM finds more useful than the retriever does are
    pulled up in proportion to the gap. Rows whose utilities sum to 0 (no teacher signal) are
    skipped; the loss is the mean over the other rows.

    Inputs to ``forward``: query embeddings ``[B, d]``, passage embeddings ``[B * G, d]`` laid
    out group by group, and the groups' utilities ``[B, G]`` (float, >= 0).
    """

    def forward(self, queries: Tensor, passages: Tensor, group_utility: Tensor) -> Tensor:
        n_queries, group_size = group_utility.shape
        rows = torch.arange(n_queries, device=queries.device)
        scores = self.similarity(queries, passages).view(n_queries, n_queries, group_size)
        return self.compute_loss_from_scores(scores[rows, rows], group_utility)

    def compute_loss_from_scores(self, scores: Tensor, targets: Tensor) -> Tensor:
        """Mean ``KL(U || softmax(scores))`` over rows whose utilities ``targets`` sum > 0.

        Args:
            scores: ``[n_queries, list_size]`` float logits over each query's own list.
            targets: ``[n_queries, list_size]`` non-negative utilities (any scale: each row
                is renormalised to a distribution).
        """
        if scores.shape != targets.shape:
            raise ValueError(f"scores {tuple(scores.shape)} vs targets {tuple(targets.shape)}")
        if bool((targets < 0).any()):
            raise ValueError("utilities must be >= 0")
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()  # log_softmax in fp32 under autocast
        targets = targets.to(scores.dtype)
        mass = targets.sum(dim=1)
        valid = mass > 0
        if not bool(valid.any()):
            return scores.sum() * 0.0
        return self.row_losses(scores[valid], targets[valid] / mass[valid, None]).mean()

    def row_losses(self, scores: Tensor, targets: Tensor) -> Tensor:
        """``KL(U || R)`` per row for distributions ``targets`` (U) and logits ``scores``."""
        log_r = torch.log_softmax(scores, dim=1)
        return (torch.xlogy(targets, targets) - targets * log_r).sum(dim=1)
