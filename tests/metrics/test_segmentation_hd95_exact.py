"""HD95 through k-d tree queries equals, bit for bit, the distance-transform computation it replaced."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt

from harness.metrics.segmentation import hausdorff


def _edt_hausdorff(pred: np.ndarray, gt: np.ndarray, percentile: float = 95.0) -> float:
    """Oracle: exact Euclidean distance transforms of the other mask's boundary (scipy), on the whole image."""
    e_pred, e_gt = pred & ~binary_erosion(pred), gt & ~binary_erosion(gt)
    d1 = distance_transform_edt(~e_gt)[e_pred]
    d2 = distance_transform_edt(~e_pred)[e_gt]
    return float(max(np.percentile(d1, percentile), np.percentile(d2, percentile)))


def _masks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 90, size=2)
    yy, xx = np.ogrid[:h, :w]
    out = []
    for _ in range(2):
        m = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 25)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        m |= rng.random((h, w)) < 0.01 * (seed % 3)  # speckle: isolated pixels, boxes reaching the border
        out.append(m)
    if seed % 4 == 0:
        out[1][:, : 1 + seed % 3] = True  # a mask along the image border
    return out[0], out[1]


@pytest.mark.parametrize("seed", range(40))
def test_hausdorff_is_bit_identical_to_the_distance_transform(seed):
    pred, gt = _masks(seed)
    if not pred.any() or not gt.any():
        pytest.skip("one mask empty: NaN by convention, covered elsewhere")
    for percentile in (95.0, 100.0, 50.0):
        assert hausdorff(pred, gt, percentile) == _edt_hausdorff(pred, gt, percentile)


def test_single_pixel_and_full_masks():
    a, b = np.zeros((7, 9), bool), np.zeros((7, 9), bool)
    a[0, 0], b[6, 8] = True, True
    assert hausdorff(a, b) == _edt_hausdorff(a, b) == pytest.approx(np.hypot(6, 8))
    full = np.ones((7, 9), bool)
    assert hausdorff(full, a) == _edt_hausdorff(full, a)
