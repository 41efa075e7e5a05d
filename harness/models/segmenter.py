"""Lesion segmenter: smp architectures (U-Net++ by default) with any smp or timm (`tu-`) encoder."""

from __future__ import annotations

import logging

import segmentation_models_pytorch as smp
from torch import nn

from harness.config import JointConfig, SegmenterConfig
from harness.errors import ConfigError, did_you_mean
from harness.models.weights import load_state_file, local_weights, with_pretrained

logger = logging.getLogger(__name__)


def check_segmenter(cfg: SegmenterConfig) -> None:
    archs = list(smp.MODEL_ARCHITECTURES_MAPPING)
    problems = []
    if cfg.arch not in archs:
        problems.append(f'segmenter.arch: unknown architecture "{cfg.arch}"; known: {", ".join(archs)}.'
                        + did_you_mean(cfg.arch, archs))
    if not cfg.encoder.startswith("tu-"):
        names = smp.encoders.get_encoder_names()
        if cfg.encoder not in names:
            problems.append(f'segmenter.encoder: unknown smp encoder "{cfg.encoder}" (any timm model works as '
                            f'"tu-<name>").' + did_you_mean(cfg.encoder, names))
    else:
        import timm

        if not timm.is_model(cfg.encoder[3:]):
            problems.append(f'segmenter.encoder: unknown timm model "{cfg.encoder[3:]}" in "{cfg.encoder}".'
                            + did_you_mean(cfg.encoder[3:], timm.list_models()))
    if problems:
        raise ConfigError(problems)


def create_segmenter(cfg: SegmenterConfig, num_classes: int, in_chans: int = 3, aux_classes: int | None = None,
                     aux_dropout: float = 0.0) -> nn.Module:
    """``num_classes`` 1 = binary (sigmoid), 3 = background/benign/malignant (softmax).

    ``aux_classes`` adds smp's classification head on the encoder (``aux_params``): the model then
    returns ``(mask logits, class logits)`` - pipeline C's multi-task network.
    """
    check_segmenter(cfg)

    def build(pretrained: bool) -> nn.Module:
        extra: dict = {"decoder_channels": list(cfg.decoder_channels)} if cfg.decoder_channels else {}
        if aux_classes:
            extra["aux_params"] = {"classes": aux_classes, "dropout": aux_dropout or None, "pooling": "avg"}
        return smp.create_model(cfg.arch, encoder_name=cfg.encoder, encoder_weights="imagenet" if pretrained else None,
                                in_channels=in_chans, classes=num_classes, **extra)

    local = local_weights(cfg.encoder) if cfg.pretrained else None
    if local is not None:
        model = build(False)
        missing, unexpected = model.get_submodule("encoder").load_state_dict(load_state_file(local), strict=False)
        logger.info("loaded encoder %s from %s (%d missing, %d unexpected keys)", cfg.encoder, local,
                    len(missing), len(unexpected))
        return model
    if cfg.pretrained:
        return with_pretrained(build, "segmenter", cfg.encoder)
    return build(False)


def segmenter_param_groups(model: nn.Module, cfg: SegmenterConfig) -> list[dict]:
    """One learning rate for the whole segmenter (paper: AdamW 1e-4)."""
    return [{"params": list(model.parameters()), "lr": cfg.lr, "name": "segmenter"}]


def create_joint(cfg: JointConfig, num_classes: int = 3, in_chans: int = 3) -> nn.Module:
    """Pipeline C: a binary lesion U-Net++ with a ``num_classes`` image-classification head."""
    return create_segmenter(cfg, 1, in_chans, aux_classes=num_classes, aux_dropout=cfg.head_dropout)


class ClassificationBranch(nn.Module):
    """The encoder and classification head of a multi-task model, as a plain classifier (for
    Grad-CAM: its last convolution is the encoder's, not the decoder's)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.encoder = model.get_submodule("encoder")
        self.classification_head = model.get_submodule("classification_head")

    def forward(self, x):
        return self.classification_head(self.encoder(x)[-1])
