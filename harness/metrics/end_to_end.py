"""The two-stage pipeline judged as one system (paper sections 5.3 and 6.3).

Inputs are per-image arrays: true label, predicted label, per-image Dice of the *final* mask (with
the empty-mask convention of :mod:`harness.metrics.segmentation`, so a missed lesion has Dice 0
and a correct empty mask on a Normal image Dice 1) and the predicted mask's pixel count.
A "lesion image" is one whose true label is Benign or Malignant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import BENIGN, MALIGNANT

ATTRIBUTIONS: tuple[str, ...] = ("none", "classification", "segmentation", "both")


def is_lesion(labels: np.ndarray) -> np.ndarray:
    """True where the true label is Benign or Malignant."""
    return np.isin(np.asarray(labels), (BENIGN, MALIGNANT))


def _mean(values: np.ndarray, where: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)[where]
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _lengths(*arrays: np.ndarray) -> None:
    sizes = {np.asarray(a).size for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"per-image arrays differ in length: {sorted(sizes)}")
    if sizes == {0}:
        raise ValueError("no images: cannot compute end-to-end metrics on empty input")


def dice_all(dice: np.ndarray) -> float:
    """Mean Dice over every image (a Normal image with an empty predicted mask counts 1)."""
    _lengths(dice)
    return _mean(dice, np.ones(np.asarray(dice).size, dtype=bool))


def dice_lesion(dice: np.ndarray, labels: np.ndarray) -> float:
    """Mean Dice over lesion images; a missed lesion counts 0 (the paper's 'mean lesion Dice')."""
    _lengths(dice, labels)
    return _mean(dice, is_lesion(labels))


def dice_conditional(dice: np.ndarray, labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Mean Dice over lesion images whose class was predicted correctly (conditional Dice)."""
    _lengths(dice, labels, pred_labels)
    labels = np.asarray(labels)
    return _mean(dice, is_lesion(labels) & (np.asarray(pred_labels) == labels))


def missed_lesion_rate(labels: np.ndarray, pred_pixels: np.ndarray) -> float:
    """Fraction of lesion images whose final mask is empty; NaN without lesion images."""
    _lengths(labels, pred_pixels)
    lesion = is_lesion(labels)
    return float(np.mean(np.asarray(pred_pixels)[lesion] == 0)) if lesion.any() else float("nan")


def false_lesion_rate(labels: np.ndarray, pred_pixels: np.ndarray) -> float:
    """Fraction of Normal images whose final mask is not empty; NaN without Normal images."""
    _lengths(labels, pred_pixels)
    normal = ~is_lesion(labels)
    return float(np.mean(np.asarray(pred_pixels)[normal] > 0)) if normal.any() else float("nan")


def attribute_errors(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray, good_dice: float = 0.5
) -> pd.DataFrame:
    """Per lesion image: was the class right, was the mask good (Dice >= ``good_dice``), and which
    stage failed: "none", "classification", "segmentation" or "both".

    The attribution is descriptive: in pipeline A a lesion called Normal also gets no mask, so it
    shows up as "both" although the classifier caused it; the table makes such coupling visible.
    """
    _lengths(labels, pred_labels, dice)
    labels, pred_labels, dice = np.asarray(labels), np.asarray(pred_labels), np.asarray(dice, dtype=float)
    lesion = is_lesion(labels)
    clf_ok = pred_labels[lesion] == labels[lesion]
    seg_ok = dice[lesion] >= good_dice
    attribution = np.select(
        [clf_ok & seg_ok, ~clf_ok & seg_ok, clf_ok & ~seg_ok], list(ATTRIBUTIONS[:3]), default=ATTRIBUTIONS[3]
    )
    return pd.DataFrame({
        "index": np.flatnonzero(lesion),
        "classification_correct": clf_ok,
        "segmentation_good": seg_ok,
        "attribution": attribution,
    })


def error_propagation_table(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray, good_dice: float = 0.5
) -> pd.DataFrame:
    """2 x 2 counts over lesion images: classification right/wrong x segmentation good/bad,
    with the fraction of lesion images and the mean Dice of each cell."""
    per = attribute_errors(labels, pred_labels, dice, good_dice)
    d = np.asarray(dice, dtype=float)[per["index"].to_numpy()]
    rows = []
    for name in ATTRIBUTIONS:
        sel = (per["attribution"] == name).to_numpy()
        rows.append({
            "attribution": name,
            "classification": "wrong" if name in ("classification", "both") else "right",
            "segmentation": f"bad (Dice < {good_dice:g})" if name in ("segmentation", "both") else f"good (Dice >= {good_dice:g})",
            "n": int(sel.sum()),
            "fraction": float(sel.mean()) if sel.size else float("nan"),
            "dice_mean": _mean(d, sel),
        })
    return pd.DataFrame(rows)


def end_to_end_metrics(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray, pred_pixels: np.ndarray
) -> dict[str, float]:
    """Section 5.3 numbers as a flat dict of python floats."""
    return {
        "dice_all_mean": dice_all(dice),
        "dice_conditional_mean": dice_conditional(dice, labels, pred_labels),
        "missed_lesion_rate": missed_lesion_rate(labels, pred_pixels),
        "false_lesion_rate": false_lesion_rate(labels, pred_pixels),
    }
