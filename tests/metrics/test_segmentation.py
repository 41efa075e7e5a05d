"""Per-image segmentation metrics against MONAI 1.6 and the documented empty-mask convention."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

from harness.metrics import segmentation as S

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:monai", "ignore:the prediction of class:UserWarning")


def _disk(shape, cy, cx, r):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _blob(seed: int, shape=(64, 80)):
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        m |= _disk(shape, rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(3, 20))
    return m


def _monai(pred, gt):
    t = lambda m: torch.from_numpy(m.astype(np.float32))[None, None]  # noqa: E731
    return {
        "dice": float(compute_dice(t(pred), t(gt), include_background=True)[0, 0]),
        "iou": float(compute_iou(t(pred), t(gt), include_background=True)[0, 0]),
        "hd95": float(compute_hausdorff_distance(t(pred), t(gt), include_background=True, percentile=95)[0, 0]),
    }


@pytest.mark.parametrize("seed", range(12))
def test_nonempty_matches_monai(seed):
    pred, gt = _blob(seed), _blob(seed + 100)
    if seed % 3 == 0:  # overlapping shifted copy, touching the border
        gt = np.roll(pred, (3, -2), axis=(0, 1))
        gt[:, :2] = True
    ours, ref = S.per_image(pred, gt), _monai(pred, gt)
    for k in ("dice", "iou", "hd95"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-5), k


def test_confusion_based_rates_hand_computed():
    pred = np.zeros((4, 5), bool)
    gt = np.zeros((4, 5), bool)
    pred[0, :3] = True  # 3 predicted
    gt[0, 1:5] = True  # 4 true, overlap 2 -> tp 2, fp 1, fn 2, tn 15
    m = S.per_image(pred, gt)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["iou"] == pytest.approx(2 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(15 / 16)
    # boundaries are the masks themselves (1 px thick); distances 1,0,0 and 0,0,1,2
    assert m["hd95"] == pytest.approx(max(np.percentile([1, 0, 0], 95), np.percentile([0, 0, 1, 2], 95)))


def test_empty_mask_convention():
    z = np.zeros((8, 8), bool)
    lesion = z.copy()
    lesion[2:5, 2:5] = True
    both = S.per_image(z, z)
    assert both == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "specificity": 1.0, "hd95": 0.0}

    false_lesion = S.per_image(lesion, z)  # gt empty, pred not
    assert false_lesion["dice"] == false_lesion["iou"] == false_lesion["precision"] == 0.0
    assert np.isnan(false_lesion["recall"]) and np.isnan(false_lesion["hd95"])
    assert false_lesion["specificity"] == pytest.approx(55 / 64)

    missed = S.per_image(z, lesion)  # gt lesion, pred empty
    assert missed["dice"] == missed["iou"] == missed["recall"] == 0.0
    assert np.isnan(missed["precision"]) and np.isnan(missed["hd95"])
    assert missed["specificity"] == 1.0

    # MONAI agrees on the defined values of the asymmetric cases
    assert _monai(z, lesion)["dice"] == 0.0
    full = np.ones((3, 3), bool)
    assert np.isnan(S.per_image(full, full)["specificity"])


def test_identical_masks_and_symmetry():
    a, b = _blob(1), _blob(2)
    same = S.per_image(a, a)
    assert same["dice"] == same["iou"] == same["precision"] == same["recall"] == 1.0 and same["hd95"] == 0.0
    ab, ba = S.per_image(a, b), S.per_image(b, a)
    for k in ("dice", "iou", "hd95"):
        assert ab[k] == pytest.approx(ba[k])
    assert ab["precision"] == pytest.approx(ba["recall"])


def test_accepts_0_255_masks_and_rejects_bad_input():
    a = _blob(3)
    assert S.per_image(a.astype(np.uint8) * 255, a) == S.per_image(a, a)
    with pytest.raises(ValueError, match="differs from gt shape"):
        S.per_image(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        S.per_image(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="threshold probabilities"):
        S.per_image(np.full((4, 4), 0.3), np.zeros((4, 4)))


def test_per_image_is_fast_on_512():
    pred = _disk((512, 512), 250, 260, 120)
    gt = _disk((512, 512), 240, 250, 110)
    S.per_image(pred, gt)
    t0 = time.perf_counter()
    for _ in range(10):
        S.per_image(pred, gt)
    assert (time.perf_counter() - t0) / 10 < 0.05  # a few ms normally; generous for loaded CI


def test_summaries_are_nan_aware():
    s = S.summarize(np.array([0.0, 0.5, 1.0, np.nan]))
    assert s["mean"] == pytest.approx(0.5) and s["median"] == 0.5 and s["n"] == 3 and s["n_nan"] == 1
    assert s["std"] == pytest.approx(np.std([0, 0.5, 1], ddof=1))
    assert np.isnan(S.summarize(np.array([np.nan]))["mean"])
    assert S.fraction_at_least(np.array([0.65, 0.75, 0.85, 0.95, np.nan])) == {0.7: 0.75, 0.8: 0.5, 0.9: 0.25}


def test_dice_by_size_quartiles():
    px = np.array([10, 40, 20, 30, 80, 70, 60, 50])
    dice = px / 100
    table = S.dice_by_size(dice, px)
    assert table["quartile"].tolist() == ["Q1", "Q2", "Q3", "Q4"]
    assert table["n"].tolist() == [2, 2, 2, 2]
    assert table["dice_mean"].tolist() == pytest.approx([0.15, 0.35, 0.55, 0.75])
    assert table["min_pixels"].tolist() == [10, 30, 50, 70]
    # permutation invariance
    perm = np.random.default_rng(0).permutation(px.size)
    assert S.dice_by_size(dice[perm], px[perm]).equals(table)


def test_summary_table_layout():
    import pandas as pd

    df = pd.DataFrame({"dice": [0.5, 1.0], "hd95": [np.nan, 2.0]})
    t = S.summary_table(df)
    assert t["metric"].tolist() == ["dice", "hd95"]
    assert t.loc[1, "n_nan"] == 1


def test_penalised_hd95_counts_a_miss_at_the_image_diagonal():
    from harness.metrics.segmentation import penalised_hd95

    gt = np.zeros((30, 40), bool)
    gt[10:20, 10:20] = True
    missed = S.per_image(np.zeros_like(gt), gt)
    assert np.isnan(missed["hd95"]) and penalised_hd95(missed["hd95"], gt.shape) == 50.0  # 3-4-5 triangle
    shifted = S.per_image(np.roll(gt, 2, axis=1), gt)
    assert penalised_hd95(shifted["hd95"], gt.shape) == shifted["hd95"] == 2.0
    assert penalised_hd95(0.0, (5, 5)) == 0.0
    with pytest.raises(ValueError, match="shape must be"):
        penalised_hd95(float("nan"), (0, 4))


def test_penalised_hd95_does_not_flatter_a_pipeline_that_misses_more():
    """B finds half the lesions with a tighter boundary: plain HD95 (misses ignored) ranks B first,
    the penalised variant ranks A first."""
    from harness.metrics import get_metric

    label = np.zeros(4, int)
    a = {"label": label, "hd95": np.full(4, 10.0), "hd95_penalised": np.full(4, 10.0)}
    b = {"label": label, "hd95": np.array([5.0, 5.0, np.nan, np.nan]),
         "hd95_penalised": np.array([5.0, 5.0, 50.0, 50.0])}
    plain, penalised = get_metric("hd95_mean"), get_metric("hd95_penalised_mean")
    assert plain.compute(b) == 5.0 < plain.compute(a) == 10.0
    assert penalised.compute(a) == 10.0 < penalised.compute(b) == 27.5
    assert penalised.direction == "min" and get_metric("hd95_penalised_median").compute(b) == 27.5
