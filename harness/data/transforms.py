"""Augmentation presets (albumentations) and test-time-augmentation views.

Images reach these transforms already resized (the array cache holds them at the stage's size), as
HxW uint8 grey; masks as HxW uint8 class maps. Normalisation to the network input happens in
:func:`to_input` so that every stage shares it.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
import torch

from harness.config import AugmentConfig

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def train_transform(cfg: AugmentConfig, seed: int | None = None) -> A.Compose:
    """The paper's training augmentation (section 3.1.1); applied jointly to image and mask.

    Flips, in-plane rotation (Affine), elastic deformation (probe pressure), brightness/contrast,
    CLAHE and multiplicative speckle noise. ``cfg`` switches each part for ablations (e.g.
    ``vflip: false`` keeps posterior acoustic shadowing below the lesion). ``seed`` makes the
    sequence of augmentations reproducible (albumentations ignores the global seeds).
    """
    s = cfg.strength
    ops: list[A.BasicTransform] = []
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5 * min(s, 1)))
    if cfg.vflip:
        ops.append(A.VerticalFlip(p=0.5 * min(s, 1)))
    if cfg.rotate_limit > 0:
        ops.append(A.Affine(rotate=(-cfg.rotate_limit, cfg.rotate_limit), scale=(0.9, 1.1),
                            translate_percent=(-0.05, 0.05), border_mode=cv2.BORDER_CONSTANT, fill=0,
                            fill_mask=0, p=min(1.0, 0.7 * s)))
    if cfg.elastic:
        ops.append(A.ElasticTransform(alpha=30, sigma=6, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0,
                                      p=min(1.0, 0.25 * s)))
    if cfg.brightness_contrast:
        ops.append(A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=min(1.0, 0.5 * s)))
    if cfg.clahe:
        ops.append(A.CLAHE(clip_limit=(1.0, 3.0), tile_grid_size=(8, 8), p=min(1.0, 0.3 * s)))
    if cfg.speckle:
        ops.append(A.MultiplicativeNoise(multiplier=(0.85, 1.15), elementwise=True, p=min(1.0, 0.3 * s)))
    return A.Compose(ops, seed=seed)


def to_input(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 grey (..., H, W) -> float32 (..., C, H, W) normalised with ImageNet statistics.

    Grey is replicated to 3 channels for ImageNet backbones; with 1 channel the mean of the
    ImageNet statistics is used.
    """
    x = images.astype(np.float32) / 255.0
    x = x[..., None, :, :]
    if channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = IMAGENET_MEAN.mean(keepdims=True), IMAGENET_STD.mean(keepdims=True)
    return ((x - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


# --- Test-time augmentation: a view and its inverse, as torch ops on (N, C, H, W) batches -----------

View = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _hflip(t: torch.Tensor) -> torch.Tensor:
    return torch.flip(t, dims=(-1,))


def _vflip(t: torch.Tensor) -> torch.Tensor:
    return torch.flip(t, dims=(-2,))


TTA_VIEWS: dict[str, View] = {
    "identity": (_identity, _identity),
    "hflip": (_hflip, _hflip),
    "vflip": (_vflip, _vflip),
}
"""name -> (forward view, inverse for dense outputs such as mask probabilities)."""


def tta_views(enabled: bool, names: tuple[str, ...]) -> list[View]:
    return [TTA_VIEWS[n] for n in (names if enabled else ("identity",))]
