"""The base of the contrastive likelihood losses: scores, target masks, cross-device gathers.

Every loss scores each query of a batch against every passage of the batch (its own group of
positives and hard negatives, plus the other queries' groups as in-batch negatives) and reads
the query's positives from a boolean target mask. One class per loss concept, as in
sentence-transformers' ``losses/``; each exposes :meth:`ContrastiveLoss.compute_loss_from_scores`,
which unit tests call on a hand-made score matrix without a model.

Relations: the batch builder (:mod:`utilann.train.sampling`) decides *which* positives sit in a
group (one rotating positive for SingleLH/Rand1LH, several for JointLH/SumMargLH/LSEPair); these
classes only turn scores and a target mask into a scalar. REPLUG's
:class:`~utilann.train.losses.kl_div.KLDiv` reads the group's teacher utilities instead.

Rows without any positive (a query kept under the ``keep`` empty-label policy) are skipped: the
loss is the mean over rows with at least one positive, and an exact zero (still attached to the
graph, so ``backward`` works) when no row has one. The authors' code does the same
(bi-encode/modeling.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

Similarity = Callable[[Tensor, Tensor], Tensor]


def dot_product(queries: Tensor, passages: Tensor) -> Tensor:
    """Raw inner products ``[n_queries, n_passages]`` (the paper's s(q, d) at temperature 1)."""
    return queries @ passages.T


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All-gather ``tensor`` along dim 0 across ranks, keeping the autograd graph.

    torch's functional ``all_gather_single`` back-propagates (it replaces the deprecated
    ``torch.distributed.nn.all_gather``): every rank's passages receive the
    gradient that the other ranks' queries put on them, so after DDP averages the gradients they
    are exactly those of the mean loss over the global batch (no world-size rescaling needed,
    unlike gathers that detach the remote copies). All ranks must send tensors of equal shape.
    """
    from torch.distributed._functional_collectives import all_gather_single

    return all_gather_single(tensor.contiguous(), 0, dist.group.WORLD)


def group_targets(group_mask: Tensor, n_groups: int, row_offset: int = 0) -> Tensor:
    """Expand per-group positive flags to a target mask over all passages of the batch.

    Args:
        group_mask: ``[n_local_queries, group_size]`` bool, True where a passage of the query's
            own group is a positive.
        n_groups: number of groups whose passages are scored (all ranks' groups when gathered).
        row_offset: index of the first local query's group among those ``n_groups``.

    Returns:
        ``[n_local_queries, n_groups * group_size]`` bool. Query ``i`` has positives only inside
        the columns of group ``row_offset + i``; other queries' passages (even their positives)
        are negatives for it, as in the authors' multi-hot targets (bi-encode/modeling.py).
    """
    n_rows, group_size = group_mask.shape
    targets = torch.zeros(n_rows, n_groups, group_size, dtype=torch.bool, device=group_mask.device)
    rows = torch.arange(n_rows, device=group_mask.device)
    targets[rows, rows + row_offset] = group_mask.bool()
    return targets.reshape(n_rows, n_groups * group_size)


class ContrastiveLoss(nn.Module, ABC):
    """Base class: embeddings -> score matrix -> target mask -> :meth:`compute_loss_from_scores`.

    Args:
        similarity: ``f(queries [n, d], passages [m, d]) -> scores [n, m]``; pass the bi-encoder's
            :meth:`~utilann.train.model.BiEncoder.similarity` so that its temperature applies.
        gather_across_devices: under ``torch.distributed`` (torchrun/DDP), score the local
            queries against the passages of *all* ranks (cross-device negatives, the authors'
            ``--negatives_x_device``). Ignored when no process group is initialised.

    Inputs to ``forward``: query embeddings ``[B, d]``, passage embeddings ``[B * G, d]`` laid
    out group by group, and the group positive mask ``[B, G]``.
    """

    def __init__(self, similarity: Similarity = dot_product, gather_across_devices: bool = False):
        super().__init__()
        self.similarity = similarity
        self.gather_across_devices = gather_across_devices

    def forward(self, queries: Tensor, passages: Tensor, group_mask: Tensor) -> Tensor:
        n_local = queries.shape[0]
        row_offset = 0
        if self.gather_across_devices and dist.is_available() and dist.is_initialized():
            passages = gather_with_grad(passages)
            row_offset = dist.get_rank() * n_local
        n_groups = passages.shape[0] // group_mask.shape[1]
        scores = self.similarity(queries, passages)
        targets = group_targets(group_mask, n_groups, row_offset)
        return self.compute_loss_from_scores(scores, targets)

    def compute_loss_from_scores(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        """Mean per-row loss over rows with >= 1 positive; 0 (attached) when there are none.

        Args:
            scores: ``[n_queries, n_passages]`` float logits (similarity / temperature).
            targets_mask: ``[n_queries, n_passages]`` bool, True at each row's positives.
        """
        if scores.shape != targets_mask.shape:
            raise ValueError(f"scores {tuple(scores.shape)} vs targets {tuple(targets_mask.shape)}")
        targets_mask = targets_mask.bool()
        has_positive = targets_mask.any(dim=1)
        if not bool(has_positive.any()):
            return scores.sum() * 0.0
        scores = scores[has_positive]
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.float()  # logsumexp in fp32 under autocast
        return self.row_losses(scores, targets_mask[has_positive]).mean()

    @abstractmethod
    def row_losses(self, scores: Tensor, targets_mask: Tensor) -> Tensor:
        """Per-row loss ``[n]`` for rows that all have at least one positive."""
