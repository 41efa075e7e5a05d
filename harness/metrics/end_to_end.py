"""The two-stage pipeline judged as one system (paper sections 5.3 and 6.3).

Inputs are per-image arrays (``n`` images, or ``B x n`` for a batch of bootstrap resamples, which
gives ``B`` values): true label, predicted label, per-image Dice of the *final* mask (with
the empty-mask convention of :mod:`harness.metrics.segmentation`, so a missed lesion has Dice 0
and a correct empty mask on a Normal image Dice 1) and the predicted mask's pixel count.
A "lesion image" is one whose true label is Benign or Malignant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import BENIGN, MALIGNANT
from harness.metrics.segmentation import masked_fraction, masked_mean

ATTRIBUTIONS: tuple[str, ...] = ("none", "classification", "segmentation", "both")


def is_lesion(labels: np.ndarray) -> np.ndarray:
    """True where the true label is Benign or Malignant."""
    return np.isin(np.asarray(labels), (BENIGN, MALIGNANT))


def _check(*arrays: np.ndarray) -> None:
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"per-image arrays differ in length: {sorted(shapes)}")
    if not np.shape(arrays[0]) or np.shape(arrays[0])[-1] == 0:
        raise ValueError("no images: cannot compute end-to-end metrics on empty input")


def _value(x: np.ndarray) -> float | np.ndarray:
    """A float for one set of images, the array of values for a batch of resamples."""
    return float(x) if np.ndim(x) == 0 else x


def dice_all(dice: np.ndarray) -> float | np.ndarray:
    """Mean Dice over every image (a Normal image with an empty predicted mask counts 1)."""
    _check(dice)
    return _value(masked_mean(dice, np.ones(np.shape(dice), dtype=bool)))


def dice_lesion(dice: np.ndarray, labels: np.ndarray) -> float | np.ndarray:
    """Mean Dice over lesion images; a missed lesion counts 0 (the paper's 'mean lesion Dice')."""
    _check(dice, labels)
    return _value(masked_mean(dice, is_lesion(labels)))


def dice_conditional(dice: np.ndarray, labels: np.ndarray, pred_labels: np.ndarray) -> float | np.ndarray:
    """Mean Dice over lesion images whose class was predicted correctly (conditional Dice)."""
    _check(dice, labels, pred_labels)
    labels = np.asarray(labels)
    return _value(masked_mean(dice, is_lesion(labels) & (np.asarray(pred_labels) == labels)))


def missed_lesion_rate(labels: np.ndarray, pred_pixels: np.ndarray) -> float | np.ndarray:
    """Fraction of lesion images whose final mask is empty; NaN without lesion images."""
    _check(labels, pred_pixels)
    return _value(masked_fraction(np.asarray(pred_pixels) == 0, is_lesion(labels)))


def false_lesion_rate(labels: np.ndarray, pred_pixels: np.ndarray) -> float | np.ndarray:
    """Fraction of Normal images whose final mask is not empty; NaN without Normal images."""
    _check(labels, pred_pixels)
    return _value(masked_fraction(np.asarray(pred_pixels) > 0, ~is_lesion(labels)))


def attribute_errors(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray, good_dice: float = 0.5
) -> pd.DataFrame:
    """Per lesion image: was the class right, was the mask good (Dice >= ``good_dice``), and which
    stage failed: "none", "classification", "segmentation" or "both".

    The attribution is descriptive: in pipeline A a lesion called Normal also gets no mask, so it
    shows up as "both" although the classifier caused it; the table makes such coupling visible.
    """
    _check(labels, pred_labels, dice)
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
            "segmentation": (f"bad (Dice < {good_dice:g})" if name in ("segmentation", "both")
                             else f"good (Dice >= {good_dice:g})"),
            "n": int(sel.sum()),
            "fraction": float(sel.mean()) if sel.size else float("nan"),
            "dice_mean": float(masked_mean(d, sel)),
        })
    return pd.DataFrame(rows)


def end_to_end_metrics(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray, pred_pixels: np.ndarray
) -> dict[str, float]:
    """Section 5.3 numbers as a flat dict of python floats."""
    return {
        "dice_all_mean": float(dice_all(dice)),
        "dice_conditional_mean": float(dice_conditional(dice, labels, pred_labels)),
        "missed_lesion_rate": float(missed_lesion_rate(labels, pred_pixels)),
        "false_lesion_rate": float(false_lesion_rate(labels, pred_pixels)),
    }
