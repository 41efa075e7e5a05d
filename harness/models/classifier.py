"""Whole-image / ROI classifier: any timm backbone + the paper's head."""

from __future__ import annotations

import logging

import timm
import torch
from torch import nn

from harness.config import ClassifierConfig
from harness.errors import ConfigError, did_you_mean
from harness.models.weights import load_state_file, local_weights, with_pretrained

logger = logging.getLogger(__name__)


class PaperHead(nn.Sequential):
    """BatchNorm - Linear - ReLU - Dropout - Linear (paper section 4.1)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float):
        super().__init__(
            nn.BatchNorm1d(in_features),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )


class Classifier(nn.Module):
    """``backbone`` (timm, pooled features) followed by ``head``; param groups split on that line."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def check_backbone(name: str, field: str = "classifier.backbone") -> None:
    if not timm.is_model(name):
        raise ConfigError(
            f'{field}: unknown timm model "{name}".' + did_you_mean(name, timm.list_models())
            + " See timm.list_models()."
        )


def create_classifier(cfg: ClassifierConfig, num_classes: int, in_chans: int = 3) -> Classifier:
    """Build the classifier; ``cfg.pretrained`` loads ImageNet weights or fails with one clear line."""
    check_backbone(cfg.backbone)

    def build(pretrained: bool) -> nn.Module:
        return timm.create_model(cfg.backbone, pretrained=pretrained, num_classes=0, in_chans=in_chans)

    local = local_weights(cfg.backbone) if cfg.pretrained else None
    if local is not None:
        backbone = build(False)
        missing, unexpected = backbone.load_state_dict(load_state_file(local), strict=False)
        logger.info("loaded %s weights from %s (%d missing, %d unexpected keys)", cfg.backbone, local,
                    len(missing), len(unexpected))
    elif cfg.pretrained:
        backbone = with_pretrained(build, "classifier", cfg.backbone)
    else:
        backbone = build(False)
    # plain attributes of timm models, which the typing of nn.Module.__getattr__ cannot see
    features = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not isinstance(features, int):
        raise TypeError(f"{cfg.backbone}: the timm model has no integer num_features (got {features!r}).")
    head = PaperHead(features, cfg.head_hidden, num_classes, cfg.head_dropout)
    return Classifier(backbone, head)


def classifier_param_groups(model: Classifier, cfg: ClassifierConfig) -> list[dict]:
    """Differential learning rates: backbone ``lr_backbone``, head ``lr_head`` (eqs. 3-4)."""
    return [
        {"params": list(model.backbone.parameters()), "lr": cfg.lr_backbone, "name": "backbone"},
        {"params": list(model.head.parameters()), "lr": cfg.lr_head, "name": "head"},
    ]
