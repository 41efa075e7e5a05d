"""ROI crop (paper eqs. 9-12) against hand-computed boxes."""

import numpy as np
import pytest

from harness.pipelines.roi import crop_resize, crop_roi, expand_box, jitter_box, roi_box, tight_box


def mask_with(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_tight_box_exclusive_max():
    # lesion rows 10..19, cols 30..49 -> box (30, 10, 50, 20)
    assert tight_box(mask_with(100, 100, 10, 20, 30, 50)) == (30, 10, 50, 20)


def test_tight_box_empty_is_none():
    assert tight_box(np.zeros((8, 8), bool)) is None


def test_paper_example_rho_02():
    # width 20 -> delta_x = floor(0.2*20) = 4; height 10 -> delta_y = floor(0.2*10) = 2
    assert roi_box(mask_with(100, 100, 10, 20, 30, 50), 0.2) == (26, 8, 54, 22)


def test_floor_of_delta():
    # width 7 -> 0.2*7 = 1.4 -> floor 1 ; height 9 -> 1.8 -> 1
    assert roi_box(mask_with(50, 50, 20, 29, 20, 27), 0.2) == (19, 19, 28, 30)


def test_clipped_to_image():
    # lesion touching the top-left corner: max(0, .) and min(W, .) of eqs. 9-12
    assert roi_box(mask_with(40, 60, 0, 10, 0, 30), 0.5) == (0, 0, 45, 15)
    assert roi_box(mask_with(40, 60, 30, 40, 40, 60), 1.0) == (20, 20, 60, 40)


def test_rho_zero_is_tight_box():
    m = mask_with(64, 64, 5, 17, 9, 33)
    assert roi_box(m, 0.0) == tight_box(m)


def test_empty_mask_full_image():
    assert roi_box(np.zeros((30, 40), bool), 0.2) == (0, 0, 40, 30)
    image = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    crop, box = crop_roi(image, np.zeros((30, 40), bool), 0.2, 16)
    assert box == (0, 0, 40, 30) and crop.shape == (16, 16)


def test_crop_contents_match_box():
    image = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    m = mask_with(50, 70, 10, 26, 20, 36)  # 16x16 lesion, rho 0.25 -> 4 px each side -> 24x24 crop
    crop, box = crop_roi(image, m, 0.25, 24)
    assert box == (16, 6, 40, 30)
    np.testing.assert_array_equal(crop, image[6:30, 16:40])  # same size: resize is the identity


def test_negative_rho_and_shape_mismatch_raise():
    with pytest.raises(ValueError):
        expand_box((0, 0, 4, 4), -0.1, 10, 10)
    with pytest.raises(ValueError):
        crop_roi(np.zeros((10, 10), np.uint8), np.zeros((9, 10), bool), 0.2, 8)


def test_jitter_box_stays_inside_and_nonempty():
    rng = np.random.default_rng(1)
    for _ in range(200):
        x0, y0, x1, y1 = jitter_box((5, 5, 15, 12), 0.9, 20, 16, rng)
        assert 0 <= x0 < x1 <= 20 and 0 <= y0 < y1 <= 16
    assert crop_resize(np.ones((16, 20), np.uint8), (x0, y0, x1, y1), 8).shape == (8, 8)
