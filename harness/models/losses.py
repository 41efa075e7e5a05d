"""Losses: the paper's hybrid Dice/Focal/Lovasz (smp.losses) and class-weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import segmentation_models_pytorch.losses as smp_losses
import torch
from torch import nn

from harness.config import LossWeights
from harness.registry import Registry

SEG_LOSSES: Registry[Callable[[str], nn.Module]] = Registry("segmentation loss")
SEG_LOSSES.register("dice")(lambda mode: smp_losses.DiceLoss(mode))
SEG_LOSSES.register("focal")(lambda mode: smp_losses.FocalLoss(mode))
SEG_LOSSES.register("lovasz")(lambda mode: smp_losses.LovaszLoss(mode))


class HybridLoss(nn.Module):
    """alpha*Dice + beta*Focal + gamma*Lovasz (eq. 6); zero-weight terms are not computed.

    ``mode`` is "binary" (logits N,1,H,W; target N,H,W in {0,1}) or "multiclass" (logits N,C,H,W;
    target N,H,W class indices).
    """

    def __init__(self, weights: LossWeights, mode: str):
        super().__init__()
        if mode not in ("binary", "multiclass"):
            raise ValueError(f"mode must be binary or multiclass, got {mode!r}")
        self.mode = mode
        pairs = [(n, w) for n, w in weights.model_dump().items() if w > 0]
        self.names = [n for n, _ in pairs]
        self.weights = [float(w) for _, w in pairs]
        self.terms = nn.ModuleList(SEG_LOSSES.get(n)(mode) for n in self.names)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.mode == "binary":
            target = target.float().unsqueeze(1) if target.ndim == 3 else target.float()
        else:
            target = target.long()
        total = logits.new_zeros(())
        for w, term in zip(self.weights, self.terms, strict=True):
            total = total + w * term(logits, target)
        return total


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """w_c = N / (C * n_c) (eqs. 1 and 13); a class absent from training gets weight 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    n = counts.sum()
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, n / (num_classes * counts), 0.0)
    return w


def cross_entropy(labels: np.ndarray | None, num_classes: int) -> nn.Module:
    """Weighted CE (eq. 2) when ``labels`` are given, plain CE otherwise."""
    if labels is None:
        return nn.CrossEntropyLoss()
    w = torch.tensor(class_weights(labels, num_classes), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=w)


class JointLoss(nn.Module):
    """Pipeline C: hybrid binary mask loss (eq. 6) + ``cls_weight`` x cross-entropy of the class head.

    ``logits`` is ``(mask logits N,1,H,W, class logits N,C)``; ``target`` is ``(mask N,H,W, label N)``.
    """

    def __init__(self, weights: LossWeights, cls_weight: float, ce: nn.Module):
        super().__init__()
        self.seg, self.ce, self.cls_weight = HybridLoss(weights, "binary"), ce, float(cls_weight)

    def forward(
        self, logits: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        loss = self.seg(logits[0], target[0])
        if self.cls_weight > 0:
            loss = loss + self.cls_weight * self.ce(logits[1].float(), target[1].long())
        return loss
