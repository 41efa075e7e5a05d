"""run_metrics: the flat dict every run writes to metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.metrics import run_metrics

REQUIRED_KEYS = [
    "accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "cohen_kappa",
    "mcc", "malignant_sensitivity", "malignant_specificity", "benign_specificity", "malignant_ppv", "auc_benign",
    "auc_malignant", "auc_normal", "ap_benign", "ap_malignant", "ap_normal", "dice_mean", "dice_median",
    "dice_std", "dice_ge_0.7", "dice_ge_0.8", "dice_ge_0.9", "iou_mean", "dice_all_mean", "dice_conditional_mean",
    "missed_lesion_rate", "false_lesion_rate", "n_images", "n_lesion_images",
]


def _table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    probs = rng.dirichlet(np.ones(3), n)
    gt_px = np.where(y < 2, rng.integers(50, 5000, n), 0)
    pred_px = np.where(pred < 2, rng.integers(1, 5000, n), 0)
    dice = np.where((gt_px == 0) & (pred_px == 0), 1.0, np.where((gt_px > 0) & (pred_px > 0), rng.random(n), 0.0))
    return pd.DataFrame({
        "image_id": [f"img{i}" for i in range(n)], "label": y, "pred_label": pred,
        "prob_benign": probs[:, 0], "prob_malignant": probs[:, 1], "prob_normal": probs[:, 2],
        "dice": dice, "iou": dice / (2 - dice), "gt_pixels": gt_px, "pred_pixels": pred_px,
    })


def test_keys_types_and_json():
    m = run_metrics(_table())
    assert set(REQUIRED_KEYS) <= set(m)
    assert all(type(v) is float for v in m.values())
    json.dumps(m)


def test_dice_keys_are_over_lesion_images_with_missed_as_zero():
    df = _table()
    m = run_metrics(df)
    lesion = df[df.label < 2]
    assert m["dice_mean"] == pytest.approx(lesion.dice.mean())
    assert m["dice_median"] == pytest.approx(lesion.dice.median())
    assert m["dice_ge_0.8"] == pytest.approx((lesion.dice >= 0.8).mean())
    assert m["dice_all_mean"] == pytest.approx(df.dice.mean())
    assert m["n_lesion_images"] == len(lesion)
    assert m["missed_lesion_rate"] == pytest.approx((lesion.pred_pixels == 0).mean())


def test_row_order_does_not_matter():
    df = _table()
    a, b = run_metrics(df), run_metrics(df.sample(frac=1, random_state=1))
    assert a == pytest.approx(b, nan_ok=True)


def test_optional_columns_give_nan_and_required_raise():
    m = run_metrics(_table()[["label", "pred_label"]])
    assert np.isnan(m["dice_mean"]) and np.isnan(m["auc_benign"]) and np.isnan(m["missed_lesion_rate"])
    assert m["accuracy"] > 0
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['pred_label'\]"):
        run_metrics(pd.DataFrame({"label": [0]}))
    with pytest.raises(ValueError, match="no rows"):
        run_metrics(_table().iloc[:0])
    with pytest.raises(ValueError, match="integer labels"):
        run_metrics(pd.DataFrame({"label": ["benign"], "pred_label": [0]}))
