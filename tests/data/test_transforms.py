"""Augmentation presets and TTA views."""

import warnings

import numpy as np
import pytest
import torch

from harness.config import AugmentConfig
from harness.data.transforms import TTA_VIEWS, to_input, train_transform, tta_views


def test_tta_inverse_restores_masks():
    mask = torch.zeros(2, 1, 8, 12)
    mask[0, 0, 1:3, 2:7] = 1
    mask[1, 0, 5:8, 0:2] = 1
    for name, (fwd, inv) in TTA_VIEWS.items():
        assert torch.equal(inv(fwd(mask)), mask), name
    assert not torch.equal(TTA_VIEWS["hflip"][0](mask), mask)
    # a hflip view really mirrors columns: pixel (r, c) -> (r, W-1-c)
    assert TTA_VIEWS["hflip"][0](mask)[0, 0, 1, 12 - 1 - 2] == 1
    assert TTA_VIEWS["vflip"][0](mask)[1, 0, 8 - 1 - 5, 0] == 1


def test_tta_views_off_is_identity_only():
    assert len(tta_views(False, ("identity", "hflip", "vflip"))) == 1
    assert len(tta_views(True, ("identity", "vflip"))) == 2


def test_train_transform_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64), np.uint8)
    image[10:30, 20:40] = 200
    mask = (image > 0).astype(np.uint8)
    tf = train_transform(AugmentConfig(elastic=False, clahe=False, brightness_contrast=False, speckle=False), seed=3)
    for _ in range(10):
        out = tf(image=image, mask=mask)
        img, m = out["image"], out["mask"]
        inside = img[m > 0]
        assert m.sum() > 0 and inside.mean() > 150, "mask must follow the lesion"
    assert rng is not None


def test_train_transform_seeded_and_no_deprecated_args():
    image = np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # albumentations warns (not fails) on renamed 1.x arguments
        a = train_transform(AugmentConfig(), seed=7)(image=image)["image"]
        b = train_transform(AugmentConfig(), seed=7)(image=image)["image"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field", ["hflip", "vflip", "elastic", "clahe", "brightness_contrast", "speckle"])
def test_each_part_can_be_switched_off(field):
    on = [type(t).__name__ for t in train_transform(AugmentConfig())]
    off = [type(t).__name__ for t in train_transform(AugmentConfig(**{field: False}))]
    assert len(off) == len(on) - 1


def test_to_input_normalises_and_replicates():
    x = to_input(np.full((2, 4, 4), 255, np.uint8), 3)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                               rtol=1e-5)
    assert to_input(np.zeros((4, 4), np.uint8), 1).shape == (1, 4, 4)
