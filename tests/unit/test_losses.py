"""The paper's losses against values worked out by hand, and their gradients.

Scores are chosen as logs of small integers so that every softmax is a simple fraction:
row 0: exp(s) = [1, 2, 1] -> p = [1/4, 1/2, 1/4], positives at columns 0 and 1;
row 1: exp(s) = [3, 1, 1] -> p = [3/5, 1/5, 1/5], positive at column 0;
row 2: no positive (skipped by every loss).
"""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from utilann.train.losses import (
    LOSSES,
    ContrastiveLoss,
    JointLH,
    KLDiv,
    LossEntry,
    LSEPair,
    Rand1LH,
    SingleLH,
    SumMargLH,
    SumMargLHClamp,
    build_loss,
    group_targets,
    register_loss,
)
from utilann.train.losses.sum_marg_clamp import CLAMP_MIN
from utilann.train.settings import TrainSettings
from utilann.train.spec import resolve_runs

LN = math.log
SCORES = torch.tensor(
    [[0.0, LN(2), 0.0], [LN(3), 0.0, 0.0], [LN(5), LN(7), 0.0]], dtype=torch.float64
)
TARGETS = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])

# row 0 / row 1 losses by hand; the mean is over the two rows that have a positive.
EXPECTED = {
    # -log p(first positive): row 0 -log(1/4), row 1 -log(3/5)
    SingleLH: (LN(4) + LN(5 / 3)) / 2,
    Rand1LH: (LN(4) + LN(5 / 3)) / 2,
    # -sum log p(d+): row 0 -log(1/4) - log(1/2) = log 8
    JointLH: (LN(8) + LN(5 / 3)) / 2,
    # -log sum p(d+): row 0 -log(3/4)
    SumMargLH: (LN(4 / 3) + LN(5 / 3)) / 2,
    # the same while the positives' mass is above the clamp
    SumMargLHClamp: (LN(4 / 3) + LN(5 / 3)) / 2,
    # log(1 + sum_+ sum_- exp(s- - s+)): row 0 pairs (d1, d3): e^0, (d2, d3): e^-ln2 -> 1 + 1/2,
    # log(5/2); row 1 pairs (d1, d2), (d1, d3): 2 e^-ln3 = 2/3, log(5/3)
    LSEPair: (LN(5 / 2) + LN(5 / 3)) / 2,
}


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_loss_matches_hand_computation(cls):
    loss = cls().compute_loss_from_scores(SCORES, TARGETS)
    assert loss.item() == pytest.approx(EXPECTED[cls], abs=1e-12)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_no_positive_anywhere_gives_attached_zero(cls):
    scores = SCORES.clone().requires_grad_(True)
    loss = cls().compute_loss_from_scores(scores, torch.zeros_like(TARGETS))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(scores.grad) == 0


def test_row_without_positive_does_not_change_the_mean():
    one_row = SumMargLH().compute_loss_from_scores(SCORES[:2], TARGETS[:2])
    with_empty = SumMargLH().compute_loss_from_scores(SCORES, TARGETS)
    assert one_row.item() == pytest.approx(with_empty.item(), abs=1e-12)


def test_summarg_is_finite_where_the_clamped_softmax_underflows():
    scores = torch.tensor([[-200.0, 0.0, 0.0]], dtype=torch.float32)
    loss = SumMargLH().compute_loss_from_scores(scores, torch.tensor([[True, False, False]]))
    # -log(e^-200 / (e^-200 + 2)) = 200 + log 2 (the authors' clamp would give -log 1e-9 = 20.7)
    assert loss.item() == pytest.approx(200 + LN(2), rel=1e-6)


def _grad(cls, scores, targets):
    scores = scores.clone().requires_grad_(True)
    cls().compute_loss_from_scores(scores, targets).backward()
    return scores.grad[0]


def test_summarg_gradient_spreads_in_proportion_to_probability():
    # exp(s) = [1, 2, 3, 4]: p = [.1, .2, .3, .4]; positives 0-2 hold P+ = .6.
    scores = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64))
    targets = torch.tensor([[True, True, True, False]])
    grad = _grad(SumMargLH, scores, targets)
    # dL/ds_j = p_j - p_j / P+ = p_j * (1 - 1/.6) = -2/3 p_j on positives; p_j on negatives.
    expected = torch.tensor([-1 / 15, -2 / 15, -3 / 15, 0.4], dtype=torch.float64)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert grad[1] / grad[0] == pytest.approx(2.0) and grad[2] / grad[0] == pytest.approx(3.0)

    # JointLH: dL/ds_j = n+ p_j - 1 = [-.7, -.4, -.1] on positives, 3 p_j = 1.2 on the negative:
    # every positive gets the same pull of -1, so the least likely one is pushed hardest.
    joint = _grad(JointLH, scores, targets)
    assert torch.allclose(joint, torch.tensor([-0.7, -0.4, -0.1, 1.2], dtype=torch.float64))
    p = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    assert torch.allclose(joint[:3] - 3 * p, torch.full((3,), -1.0, dtype=torch.float64))


def test_lsepair_gradient_weights_the_losing_positives_most():
    # exp(s) = [1, 2, 3, 4], positives 0-2, negative 3:
    # S = sum_+ e^(s- - s+) = 4 (1 + 1/2 + 1/3) = 22/3, L = log(1 + S) = log(25/3).
    scores = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64))
    targets = torch.tensor([[True, True, True, False]])
    loss = LSEPair().compute_loss_from_scores(scores, targets)
    assert loss.item() == pytest.approx(LN(25 / 3), abs=1e-12)
    # dL/ds- = S / (1 + S) = 22/25; dL/ds+_j = -(4 / x_j) / (1 + S) = -12/25, -6/25, -4/25
    grad = _grad(LSEPair, scores, targets)
    expected = torch.tensor([-12 / 25, -6 / 25, -4 / 25, 22 / 25], dtype=torch.float64)
    assert torch.allclose(grad, expected, atol=1e-12)


def test_lsepair_row_without_negatives_contributes_zero():
    scores = torch.tensor([[1.0, 2.0], [0.0, LN(3)]], dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[True, True], [False, True]])
    loss = LSEPair().compute_loss_from_scores(scores, targets)
    # row 0 has nothing to rank against; row 1: log(1 + e^(0 - ln 3)) = log(4/3)
    assert loss.item() == pytest.approx(LN(4 / 3) / 2, abs=1e-12)
    loss.backward()
    assert torch.isfinite(scores.grad).all() and torch.count_nonzero(scores.grad[0]) == 0


def test_lsepair_is_stable_for_large_margins():
    scores = torch.tensor([[-300.0, 300.0, 0.0]], dtype=torch.float32)
    loss = LSEPair().compute_loss_from_scores(scores, torch.tensor([[True, False, False]]))
    # log(1 + e^600 + e^300) = 600 up to float precision (a naive sum overflows to inf)
    assert loss.item() == pytest.approx(600.0, rel=1e-6)


def test_summarg_clamp_gradient_matches_summarg_above_the_clamp():
    scores = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64))
    targets = torch.tensor([[True, True, True, False]])
    expected = torch.tensor([-1 / 15, -2 / 15, -3 / 15, 0.4], dtype=torch.float64)
    assert torch.allclose(_grad(SumMargLHClamp, scores, targets), expected, atol=1e-12)


def test_summarg_clamp_has_no_gradient_below_the_clamp_where_summarg_pulls():
    # P(D+) = e^-30 / (e^-30 + 2) ~ 4.7e-14 < 1e-9
    scores = torch.tensor([[-30.0, 0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[True, False, False]])
    clamped = SumMargLHClamp().compute_loss_from_scores(scores, targets)
    assert clamped.item() == pytest.approx(-LN(CLAMP_MIN), abs=1e-9)  # 20.72, a constant
    assert torch.count_nonzero(_grad(SumMargLHClamp, scores, targets)) == 0
    exact = SumMargLH().compute_loss_from_scores(scores, targets)
    assert exact.item() == pytest.approx(30 + LN(2), rel=1e-9)
    # SumMargLH: p - p / P+ = [p0 - 1, 1/2, 1/2] with p0 ~ 0: the positive is pulled up fully
    grad = _grad(SumMargLH, scores, targets)
    assert torch.allclose(grad, torch.tensor([-1.0, 0.5, 0.5], dtype=torch.float64), atol=1e-12)


# REPLUG: KL(U || R) over each query's own list. Row 0: R = [1/4, 1/2, 1/4], utilities
# [1, 1, 0] -> U = [1/2, 1/2, 0]; row 1: R = [3/5, 1/5, 1/5], utilities [1, 3, 1] -> U = [.2, .6,
# .2]; row 2: no utility (skipped).
UTILITY = torch.tensor([[1.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)


def test_kl_div_matches_hand_computation():
    # row 0: 1/2 log(2) + 1/2 log(1) + 0; row 1: .2 log(1/3) + .6 log 3 + .2 log 1 = .4 log 3
    loss = KLDiv().compute_loss_from_scores(SCORES, UTILITY)
    assert loss.item() == pytest.approx((LN(2) / 2 + 0.4 * LN(3)) / 2, abs=1e-12)


def test_kl_div_gradient_is_r_minus_u():
    scores = SCORES.clone().requires_grad_(True)
    KLDiv().compute_loss_from_scores(scores, UTILITY).backward()
    expected = torch.tensor(
        [[-1 / 4, 0.0, 1 / 4], [0.4, -0.4, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )
    assert torch.allclose(scores.grad, expected / 2, atol=1e-12)  # mean over the two rows


def test_kl_div_is_zero_when_the_retriever_matches_the_teacher():
    scores = torch.log(torch.tensor([[1.0, 2.0, 5.0]], dtype=torch.float64))
    loss = KLDiv().compute_loss_from_scores(scores, torch.tensor([[2.0, 4.0, 10.0]]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert KLDiv().compute_loss_from_scores(SCORES, torch.zeros_like(UTILITY)).item() == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        KLDiv().compute_loss_from_scores(SCORES, -UTILITY)


def test_kl_div_forward_compares_only_the_own_list():
    # 2 queries x groups of 2: scores q p^T = [[1, 0, 0, 1], [2, 2, 2, 0]]; in-batch columns
    # (the other query's group) take no part, unlike the contrastive losses.
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    utility = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    own = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    expected = KLDiv().compute_loss_from_scores(own, utility)
    assert KLDiv()(q, p, utility).item() == pytest.approx(expected.item(), abs=1e-12)


def test_group_targets_marks_only_the_own_group():
    group_mask = torch.tensor([[True, False], [True, True]])
    expected = torch.tensor(
        [
            [False, False, True, False, False, False],
            [False, False, False, False, True, True],
        ]
    )
    assert torch.equal(group_targets(group_mask, n_groups=3, row_offset=1), expected)


def test_forward_scores_in_batch_and_hard_negatives():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    group_mask = torch.tensor([[True, False], [True, False]])
    # scores = q p^T = [[1, 0, 0, 1], [2, 2, 2, 0]]; row 0 target col 0, row 1 col 2.
    row0 = -LN(math.e / (math.e + 1 + 1 + math.e))
    row1 = -LN(math.e**2 / (3 * math.e**2 + 1))
    loss = SingleLH()(q, p, group_mask)
    assert loss.item() == pytest.approx((row0 + row1) / 2, abs=1e-12)


def test_build_loss_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("InfoNCE")


def test_every_registered_loss_builds_its_class():
    for name, entry in LOSSES.items():
        loss = build_loss(name)
        assert type(loss) is entry.load() and type(loss).__name__ == name


class HardestNegativeLH(ContrastiveLoss):
    """A toy loss for the registry test: the best positive against the hardest negative."""

    def row_losses(self, scores, targets_mask):
        best_positive = scores.masked_fill(~targets_mask, float("-inf")).max(dim=1).values
        hardest_negative = scores.masked_fill(targets_mask, float("-inf")).max(dim=1).values
        return torch.nn.functional.softplus(hardest_negative - best_positive)


def test_a_loss_is_one_class_plus_one_registry_line():
    register_loss("HardestNegativeLH", f"{__name__}:HardestNegativeLH", single_positive=False)
    try:
        # run settings accept it (the Snakefile's parse-time check) ...
        spec = resolve_runs(
            {
                "defaults": {"backbone": "b"},
                "runs": {"hn": {"loss": "HardestNegativeLH", "positive_sampling": "pos_all"}},
            }
        )["hn"]
        assert spec.train.loss == "HardestNegativeLH"
        # ... and the trainer's build_loss makes it: softplus(hardest negative - best positive)
        loss = build_loss(spec.train.loss).compute_loss_from_scores(SCORES, TARGETS)
        assert loss.item() == pytest.approx((LN(1 + 1 / 2) + LN(1 + 1 / 3)) / 2, abs=1e-12)
        with pytest.raises(ValueError, match="already registered"):
            register_loss(
                "HardestNegativeLH", f"{__name__}:HardestNegativeLH", single_positive=False
            )
    finally:
        LOSSES.pop("HardestNegativeLH")


def test_single_positive_losses_are_read_from_the_registry(monkeypatch):
    monkeypatch.setitem(LOSSES, "OneLH", LossEntry(f"{__name__}:HardestNegativeLH", True))
    for sampling in ("pos_all", "pos_one"):  # pos_one draws other positives into the group
        with pytest.raises(ValueError, match="positive_sampling 'single'"):
            TrainSettings(loss="OneLH", positive_sampling=sampling)
    assert TrainSettings(loss="OneLH", positive_sampling="single").loss == "OneLH"
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainSettings(loss="InfoNCE")


def test_utility_losses_need_the_replug_label_source():
    training = {"defaults": {"backbone": "b"}}
    with pytest.raises(ValueError, match="needs label_source 'replug'"):
        resolve_runs({**training, "runs": {"r": {"label_source": "utilsel", "loss": "KLDiv"}}})
    spec = resolve_runs(
        {
            **training,
            "runs": {
                "r": {"label_source": "replug", "loss": "KLDiv", "positive_sampling": "pos_one"}
            },
        }
    )["r"]
    assert LOSSES[spec.train.loss].utility and spec.trainset.needs_replug


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gathered_worker(rank, world, port, q_all, p_all, mask_all, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q = q_all.clone().requires_grad_(True)
        p = p_all.clone().requires_grad_(True)
        b = q_all.shape[0] // world
        g = p_all.shape[0] // q_all.shape[0]
        loss = SumMargLH(gather_across_devices=True)(
            q[rank * b : (rank + 1) * b],
            p[rank * b * g : (rank + 1) * b * g],
            mask_all[rank * b : (rank + 1) * b],
        )
        loss.backward()
        out[rank] = (loss.detach(), q.grad, p.grad)
    finally:
        torch.distributed.destroy_process_group()


def test_cross_device_gather_equals_one_big_batch():
    """Two gloo ranks with gathered negatives give the single-process loss and gradient."""
    torch.manual_seed(0)
    q_all = torch.randn(4, 3, dtype=torch.float64)
    p_all = torch.randn(8, 3, dtype=torch.float64)
    mask_all = torch.tensor([[True, False], [True, True], [False, False], [True, False]])

    q_ref = q_all.clone().requires_grad_(True)
    p_ref = p_all.clone().requires_grad_(True)
    ref = SumMargLH()(q_ref, p_ref, mask_all)
    ref.backward()

    out = mp.Manager().dict()
    mp.spawn(
        _gathered_worker, args=(2, _free_port(), q_all, p_all, mask_all, out), nprocs=2, join=True
    )
    # Each rank averages over its own rows with a positive (2 and 1 here): DDP then averages
    # the ranks. The reference is therefore the mean of the two per-rank means.
    rank_losses = [out[r][0].item() for r in range(2)]
    rows = SumMargLH().row_losses(
        (q_all @ p_all.T)[[0, 1, 3]], group_targets(mask_all, 4)[[0, 1, 3]]
    )
    assert rank_losses[0] == pytest.approx(rows[:2].mean().item(), abs=1e-10)
    assert rank_losses[1] == pytest.approx(rows[2].item(), abs=1e-10)
    # Gradients: DDP's average of the ranks' gradients = gradient of the mean of rank losses.
    q_mean = (out[0][1] + out[1][1]) / 2
    p_mean = (out[0][2] + out[1][2]) / 2
    q_ref2 = q_all.clone().requires_grad_(True)
    p_ref2 = p_all.clone().requires_grad_(True)
    scores = q_ref2 @ p_ref2.T
    targets = group_targets(mask_all, 4)
    per_rank = [
        SumMargLH().compute_loss_from_scores(scores[:2], targets[:2]),
        SumMargLH().compute_loss_from_scores(scores[2:], targets[2:]),
    ]
    ((per_rank[0] + per_rank[1]) / 2).backward()
    assert torch.allclose(q_mean, q_ref2.grad, atol=1e-10)
    assert torch.allclose(p_mean, p_ref2.grad, atol=1e-10)
    assert ref.item() == pytest.approx(rows.mean().item(), abs=1e-10)
