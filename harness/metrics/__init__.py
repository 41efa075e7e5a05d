"""Every metric of the paper as pure functions, and :func:`run_metrics` for a predictions table.

Modules: :mod:`.classification` (eq. 5, Appendix A), :mod:`.segmentation` (per-image masks and
the empty-mask convention), :mod:`.end_to_end` (section 5.3 / 6.3), :mod:`.stats` (bootstrap,
seeds, paired tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.metrics.classification import classification_metrics, one_vs_rest_scores, per_class, confusion_matrix
from harness.metrics.end_to_end import end_to_end_metrics, is_lesion
from harness.metrics.segmentation import DICE_THRESHOLDS, dice_by_size, fraction_at_least, per_image, summarize

__all__ = ["run_metrics", "per_image", "PROB_COLUMNS", "REQUIRED_COLUMNS"]

PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c.lower()}" for c in CLASS_NAMES)
REQUIRED_COLUMNS: tuple[str, ...] = ("label", "pred_label")

# per-image segmentation columns summarised over lesion images -> key prefix in run_metrics
_SEG_PREFIX = {"iou": "iou", "precision": "seg_precision", "recall": "seg_recall",
               "specificity": "seg_specificity", "hd95": "hd95"}


def _labels(pred: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(pred[column], errors="coerce").to_numpy(dtype=float)
    if np.isnan(values).any():
        bad = pred[column][np.isnan(values)].iloc[0]
        raise ValueError(f"column {column} must hold integer labels 0-2, but got {bad!r}")
    return values.astype(np.int64)


def run_metrics(pred: pd.DataFrame, good_dice: float = 0.5) -> dict[str, float]:
    """Flat dict of every headline metric from a predictions table (one row per image).

    Required columns: ``label``, ``pred_label``. Optional: ``prob_benign/prob_malignant/
    prob_normal`` (AUC/AP), ``dice, iou, precision, recall, specificity, hd95`` of the final mask,
    ``gt_pixels`` (Dice by size quartile) and ``pred_pixels`` (missed/false lesion rates); keys
    that need a missing column are NaN. ``dice_*`` keys are over lesion images (true label Benign
    or Malignant), a missed lesion counting 0 - what Table 9 reports. All values are python
    floats, so ``json.dumps`` works (NaN allowed).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {missing}; it has {list(pred.columns)}")
    if len(pred) == 0:
        raise ValueError("predictions table has no rows: nothing to evaluate")
    nan = float("nan")
    y, yhat = _labels(pred, "label"), _labels(pred, "pred_label")
    out: dict[str, float] = classification_metrics(y, yhat)
    pc = per_class(confusion_matrix(y, yhat))
    for c, name in enumerate(CLASS_NAMES):
        for k in ("precision", "recall", "f1"):
            out[f"{k}_{name.lower()}"] = float(pc[k][c])

    if all(c in pred.columns for c in PROB_COLUMNS):
        out.update(one_vs_rest_scores(y, pred[list(PROB_COLUMNS)].to_numpy(dtype=float)))
    else:
        out.update({f"{m}_{n.lower()}": nan for n in CLASS_NAMES for m in ("auc", "ap")})

    lesion = is_lesion(y)
    dice = pred["dice"].to_numpy(dtype=float) if "dice" in pred.columns else np.full(len(pred), nan)
    s = summarize(dice[lesion])
    out.update({f"dice_{k}": float(s[k]) for k in ("mean", "median", "std", "min", "max")})
    out.update({f"dice_ge_{t:g}": v for t, v in fraction_at_least(dice[lesion], DICE_THRESHOLDS).items()})
    for col, prefix in _SEG_PREFIX.items():
        v = pred[col].to_numpy(dtype=float)[lesion] if col in pred.columns else np.array([nan])
        s = summarize(v)
        out[f"{prefix}_mean"], out[f"{prefix}_median"] = s["mean"], s["median"]
    if "gt_pixels" in pred.columns and lesion.any():
        by_size = dice_by_size(dice[lesion], pred["gt_pixels"].to_numpy(dtype=float)[lesion])
        out.update({f"dice_{q.lower()}_mean": float(m) for q, m in zip(by_size["quartile"], by_size["dice_mean"])})
    else:
        out.update({f"dice_q{k}_mean": nan for k in range(1, 5)})

    pred_pixels = pred["pred_pixels"].to_numpy(dtype=float) if "pred_pixels" in pred.columns else None
    e2e = end_to_end_metrics(y, yhat, dice, pred_pixels if pred_pixels is not None else np.zeros(len(pred)))
    if pred_pixels is None:
        e2e["missed_lesion_rate"] = e2e["false_lesion_rate"] = nan
    out.update(e2e)
    out["n_images"] = float(len(pred))
    out["n_lesion_images"] = float(lesion.sum())
    out["n_normal_images"] = float((~lesion).sum())
    return {k: float(v) for k, v in out.items()}
