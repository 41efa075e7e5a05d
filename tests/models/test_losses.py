"""Loss combination and class weights against hand-computed values."""

import numpy as np
import pytest
import segmentation_models_pytorch.losses as L
import torch

from harness.config import LossWeights
from harness.models.losses import SEG_LOSSES, HybridLoss, class_weights, cross_entropy


def test_class_weights_hand_computed():
    # N=10, C=3, counts 5/3/2 -> 10/15, 10/9, 10/6
    w = class_weights(np.array([0] * 5 + [1] * 3 + [2] * 2), 3)
    np.testing.assert_allclose(w, [10 / 15, 10 / 9, 10 / 6])


def test_class_weights_binary_eq13_and_absent_class():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 2), [4 / 6, 4 / 2])
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 3), [3 / 6, 0.0, 3 / 3])


def test_weighted_cross_entropy_matches_manual():
    labels = np.array([0, 0, 0, 1, 2, 2])
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor(labels)
    w = torch.tensor(class_weights(labels, 3), dtype=torch.float32)
    logp = torch.log_softmax(logits, 1)[torch.arange(6), y]
    manual = -(w[y] * logp).sum() / w[y].sum()  # torch's weighted mean
    assert torch.allclose(cross_entropy(labels, 3)(logits, y), manual)


@pytest.mark.parametrize("mode,channels", [("binary", 1), ("multiclass", 3)])
def test_hybrid_is_weighted_sum_of_smp_losses(mode, channels):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, channels, 16, 16, generator=g)
    target = torch.randint(0, 2 if mode == "binary" else 3, (2, 16, 16), generator=g)
    w = LossWeights(dice=0.5, focal=0.2, lovasz=0.3)
    t = target.float().unsqueeze(1) if mode == "binary" else target
    expected = (0.5 * L.DiceLoss(mode)(logits, t) + 0.2 * L.FocalLoss(mode)(logits, t)
                + 0.3 * L.LovaszLoss(mode)(logits, t))
    assert torch.allclose(HybridLoss(w, mode)(logits, target), expected, atol=1e-6)


def test_zero_weight_terms_are_skipped_and_loss_trains():
    loss = HybridLoss(LossWeights(dice=1.0, focal=0.0, lovasz=0.0), "binary")
    assert loss.names == ["dice"]
    logits = torch.zeros(1, 1, 8, 8, requires_grad=True)
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0


def test_registry_contains_paper_terms():
    assert SEG_LOSSES.names() == ["dice", "focal", "lovasz"]
