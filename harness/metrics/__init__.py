"""Every metric of the paper as pure functions, and :func:`run_metrics` for a predictions table.

Modules: :mod:`.classification` (eq. 5, Appendix A), :mod:`.segmentation` (per-image masks and
the empty-mask convention), :mod:`.end_to_end` (section 5.3 / 6.3), :mod:`.stats` (bootstrap,
seeds, paired tests, Holm), :mod:`.registry` (one declaration per metric) with the declarations
in :mod:`.catalog` and the paired-test strategies in :mod:`.paired`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.metrics import catalog, paired  # noqa: F401  (declares the registered metrics and tests)
from harness.metrics.catalog import PROB_COLUMNS
from harness.metrics.end_to_end import is_lesion
from harness.metrics.registry import (
    Metric,
    Sample,
    compute_metrics,
    get_metric,
    list_metrics,
    metric,
    metric_direction,
    register,
    unregister,
)
from harness.metrics.segmentation import dice_by_size, per_image, summarize

__all__ = ["run_metrics", "per_image", "PROB_COLUMNS", "REQUIRED_COLUMNS", "Metric", "Sample", "metric", "register",
           "unregister", "get_metric", "list_metrics", "metric_direction", "compute_metrics"]

REQUIRED_COLUMNS: tuple[str, ...] = ("label", "pred_label")


def _labels(pred: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(pred[column], errors="coerce").to_numpy(dtype=float)
    wrong = np.isnan(values) | ~np.isin(values, (0.0, 1.0, 2.0))  # 1.5 is no class (not truncated to 1)
    if wrong.any():
        bad = pred[column][wrong].iloc[0]
        raise ValueError(f"column {column} must hold integer labels 0-2, but got {bad!r}")
    return values.astype(np.int64)


def _descriptive(pred: pd.DataFrame, lesion: np.ndarray) -> dict[str, float]:
    """Spread, counts and the by-size breakdown: numbers to read, not metrics to rank by."""
    nan = float("nan")
    dice = pred["dice"].to_numpy(dtype=float) if "dice" in pred.columns else np.full(len(pred), nan)
    s = summarize(dice[lesion])
    out = {f"dice_{k}": float(s[k]) for k in ("std", "min", "max")}
    if "gt_pixels" in pred.columns and "dice" in pred.columns and lesion.any():
        by_size = dice_by_size(dice[lesion], pred["gt_pixels"].to_numpy(dtype=float)[lesion])
        quartiles = zip(by_size["quartile"], by_size["dice_mean"], strict=True)
        out.update({f"dice_{q.lower()}_mean": float(m) for q, m in quartiles})
    else:
        out.update({f"dice_q{k}_mean": nan for k in range(1, 5)})
    out["n_images"] = float(len(pred))
    out["n_lesion_images"] = float(lesion.sum())
    out["n_normal_images"] = float((~lesion).sum())
    return out


def run_metrics(pred: pd.DataFrame, good_dice: float = 0.5) -> dict[str, float]:
    """Flat dict of every registered metric (:func:`list_metrics`) of a predictions table (one row
    per image), plus Dice spread, Dice by lesion-size quartile and image counts.

    Required columns: ``label``, ``pred_label``. Optional: ``prob_benign/prob_malignant/
    prob_normal`` (AUC/AP), ``dice, iou, precision, recall, specificity, hd95`` of the final mask,
    ``gt_pixels`` (Dice by size quartile) and ``pred_pixels`` (missed/false lesion rates); a metric
    that needs a missing column is NaN. ``dice_*`` keys are over lesion images (true label Benign
    or Malignant), a missed lesion counting 0 - what Table 9 reports. All values are python
    floats, so ``json.dumps`` works (NaN allowed).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in pred.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {missing}; it has {list(pred.columns)}")
    if len(pred) == 0:
        raise ValueError("predictions table has no rows: nothing to evaluate")
    columns = {c: pred[c].to_numpy() for c in pred.columns if c not in REQUIRED_COLUMNS}
    columns.update({c: _labels(pred, c) for c in REQUIRED_COLUMNS})
    out = {k: float(v[0]) for k, v in compute_metrics(Sample(columns)).items()}
    out.update(_descriptive(pred, is_lesion(columns["label"])))
    return out
