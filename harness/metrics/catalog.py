"""The harness's metrics, declared once each (see :mod:`harness.metrics.registry`).

Table 9 of the paper (section 6.1) is the ``section``/``order``/``paper`` fields below: the only
hard-coded results in the harness. Every function takes a :class:`Sample` (``B`` resamples of the
per-image columns) and returns ``B`` values; the formulas live in :mod:`.classification`,
:mod:`.segmentation` and :mod:`.end_to_end` and are tested there against independent oracles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import CLASS_NAMES
from harness.metrics import end_to_end as E
from harness.metrics.classification import average_precision, from_confusion, per_class, roc_auc
from harness.metrics.registry import Direction, Metric, Sample, register
from harness.metrics.segmentation import DICE_THRESHOLDS, masked_fraction, masked_mean, masked_median

CLF = "Classification performance"
SEG = "Segmentation performance"
CLINICAL = "Clinical metrics (malignancy)"
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c.lower()}" for c in CLASS_NAMES)
PERMUTATION = "permutation"
"""Paired permutation test over patients of the row's own metric (:mod:`harness.metrics.paired`)."""

# ------------------------------------------------------------------------------------------------
# Classification: one confusion matrix per resample (:func:`from_confusion`, checked against sklearn)


def _confusion_metric(key: str):
    def fn(s: Sample) -> np.ndarray:
        return s.cached("from_confusion", lambda: from_confusion(s.confusion))[key]

    fn.__name__ = key
    return fn


_CLASSIFICATION: tuple[tuple[str, str, tuple[str, int, float, float, str] | None, dict[str, Any]], ...] = (
    # key, name, Table 9 (section, order, paper A, paper B, test), extra fields
    ("accuracy", "Accuracy", None, {}),
    ("balanced_accuracy", "Balanced Accuracy", (CLF, 1, 0.8439, 0.8040, PERMUTATION), {}),
    ("macro_precision", "Macro Precision", None, {}),
    ("macro_recall", "Macro Recall", None, {}),
    ("macro_f1", "Macro F1", (CLF, 2, 0.8307, 0.8049, PERMUTATION), {}),  # mean of per-class F1 (sklearn)
    ("macro_f1_harmonic", "Macro F1 (harmonic)", None, {"nan_policy": "NaN when macro precision and recall are 0"}),
    ("weighted_f1", "Weighted F1", None, {}),
    ("cohen_kappa", "Cohen's Kappa", (CLF, 3, 0.7465, 0.7364, PERMUTATION),
     {"bounds": (-1.0, 1.0), "nan_policy": "NaN when chance agreement is 1 (one class in truth and predictions)"}),
    ("mcc", "MCC", None, {"bounds": (-1.0, 1.0), "nan_policy": "never NaN (0 when undefined)"}),
    ("malignant_sensitivity", "Malignant Sensitivity", (CLINICAL, 9, 0.9330, 0.8630, PERMUTATION),
     {"nan_policy": "NaN without malignant images"}),
    ("malignant_specificity", "Malignant Specificity", (CLINICAL, 10, 0.9239, 0.8596, PERMUTATION),
     {"nan_policy": "NaN without non-malignant images"}),
    ("malignant_ppv", "Malignant PPV", None, {"nan_policy": "NaN when nothing is called malignant"}),
    ("benign_specificity", "Benign Specificity", None, {"nan_policy": "NaN without non-benign images"}),
)


def _table9_fields(t9) -> dict:
    if t9 is None:
        return {}
    section, order, paper_a, paper_b, test = t9
    return {"section": section, "order": order, "paper": {"a": paper_a, "b": paper_b}, "test": test}


for _key, _name, _t9, _extra in _CLASSIFICATION:
    register(Metric(_key, _name, _confusion_metric(_key), **{"nan_policy": "never NaN", **_extra},
                    **_table9_fields(_t9)))


def _per_class_metric(stat: str, c: int):
    def fn(s: Sample) -> np.ndarray:
        return s.cached("per_class", lambda: per_class(s.confusion))[stat][..., c]

    return fn


for _c, _cls in enumerate(CLASS_NAMES):
    register(Metric(f"precision_{_cls.lower()}", f"Precision ({_cls})", _per_class_metric("precision", _c),
                    nan_policy=f"NaN when nothing is predicted {_cls}"))
    register(Metric(f"recall_{_cls.lower()}", f"Recall ({_cls})", _per_class_metric("recall", _c),
                    nan_policy=f"NaN without {_cls} images"))
    register(Metric(f"f1_{_cls.lower()}", f"F1 ({_cls})", _per_class_metric("f1", _c),
                    nan_policy=f"NaN when {_cls} is neither true nor predicted"))


# ------------------------------------------------------------------------------------------------
# Scores: one-vs-rest ROC AUC / average precision from prob_<class> (a loop over resamples)


def _score_metric(score, c: int):
    def fn(s: Sample) -> np.ndarray:
        y, p = s["label"] == c, s[PROB_COLUMNS[c]]
        return np.array([score(y[b], p[b]) for b in range(s.n_resamples)])

    return fn


for _c, _cls in enumerate(CLASS_NAMES):
    _needs = ("label", *PROB_COLUMNS)
    register(Metric(f"auc_{_cls.lower()}", f"ROC AUC ({_cls})", _score_metric(roc_auc, _c), needs=_needs,
                    nan_policy=f"NaN when all or no images are {_cls}"))
    register(Metric(f"ap_{_cls.lower()}", f"Average Precision ({_cls})", _score_metric(average_precision, _c),
                    needs=_needs, nan_policy=f"NaN without {_cls} images"))


# ------------------------------------------------------------------------------------------------
# Segmentation of lesion images (true Benign/Malignant; a missed lesion has Dice 0), NaN values ignored

_LESION_NAN = "NaN without lesion images (NaN per-image values are ignored)"
DICE_TEST = "wilcoxon_dice"
"""Mean and median Dice: Wilcoxon signed-rank on per-patient mean lesion Dice. The Dice >= t rows
are fractions, tested on their own metric by the patient permutation test."""


def _lesion_summary(column: str, reduce):
    def fn(s: Sample) -> np.ndarray:
        return reduce(s[column], s.lesion)

    return fn


register(Metric("dice_mean", "Mean Dice", _lesion_summary("dice", masked_mean), needs=("label", "dice"),
                order=4, paper={"a": 0.7537, "b": 0.8249}, nan_policy=_LESION_NAN, section=SEG, test=DICE_TEST))
register(Metric("dice_median", "Median Dice", _lesion_summary("dice", masked_median), needs=("label", "dice"),
                order=5, paper={"a": 0.9047, "b": 0.9324}, nan_policy=_LESION_NAN, section=SEG, test=DICE_TEST))


def _dice_at_least(t: float):
    def fn(s: Sample) -> np.ndarray:
        d = s["dice"]
        return masked_fraction(d >= t, s.lesion & ~np.isnan(d))

    return fn


_PAPER_DICE_GE = {0.7: {"a": 0.837, "b": 0.837}, 0.8: {"a": 0.78, "b": 0.814}, 0.9: {"a": 0.526, "b": 0.658}}
for _k, _t in enumerate(DICE_THRESHOLDS):
    register(Metric(f"dice_ge_{_t:g}", f"Dice >= {_t:g}", _dice_at_least(_t), needs=("label", "dice"),
                    order=6 + _k, percent=True, paper=_PAPER_DICE_GE.get(_t, {}), nan_policy=_LESION_NAN, section=SEG,
                    test=PERMUTATION))

_SEG_COLUMNS: tuple[tuple[str, str, str, Direction, tuple[float, float]], ...] = (  # column, prefix, name, dir, bounds
    ("iou", "iou", "IoU", "max", (0.0, 1.0)),
    ("precision", "seg_precision", "Pixel Precision", "max", (0.0, 1.0)),
    ("recall", "seg_recall", "Pixel Recall", "max", (0.0, 1.0)),
    ("specificity", "seg_specificity", "Pixel Specificity", "max", (0.0, 1.0)),
    ("hd95", "hd95", "HD95 (px)", "min", (0.0, float("inf"))),
)
for _col, _prefix, _name, _dir, _bounds in _SEG_COLUMNS:
    for _stat, _reduce in (("mean", masked_mean), ("median", masked_median)):
        register(Metric(f"{_prefix}_{_stat}", f"{_stat.title()} {_name}", _lesion_summary(_col, _reduce),
                        needs=("label", _col), direction=_dir, bounds=_bounds, nan_policy=_LESION_NAN))

# HD95 ignores missed lesions (no boundary, NaN), which flatters a pipeline that misses more; the
# penalised variant counts a missed lesion at the image diagonal (segmentation.penalised_hd95).
for _stat, _reduce in (("mean", masked_mean), ("median", masked_median)):
    register(Metric(f"hd95_penalised_{_stat}", f"{_stat.title()} HD95, missed lesion = image diagonal (px)",
                    _lesion_summary("hd95_penalised", _reduce), needs=("label", "hd95_penalised"), direction="min",
                    bounds=(0.0, float("inf")), nan_policy=_LESION_NAN))


# ------------------------------------------------------------------------------------------------
# End to end (paper 5.3 / 6.3)


def dice_all_mean(s: Sample) -> np.ndarray:
    return np.asarray(E.dice_all(s["dice"]))


def dice_conditional_mean(s: Sample) -> np.ndarray:
    return np.asarray(E.dice_conditional(s["dice"], s["label"], s["pred_label"]))


def missed_lesion_rate(s: Sample) -> np.ndarray:
    return np.asarray(E.missed_lesion_rate(s["label"], s["pred_pixels"]))


def false_lesion_rate(s: Sample) -> np.ndarray:
    return np.asarray(E.false_lesion_rate(s["label"], s["pred_pixels"]))


register(Metric("dice_all_mean", "Mean Dice (all images)", dice_all_mean, needs=("dice",),
                nan_policy="NaN only when every per-image Dice is NaN"))
register(Metric("dice_conditional_mean", "Conditional Dice", dice_conditional_mean,
                needs=("label", "pred_label", "dice"),
                nan_policy="NaN without a correctly classified lesion image"))
register(Metric("missed_lesion_rate", "Missed Lesion Rate", missed_lesion_rate, needs=("label", "pred_pixels"),
                direction="min", nan_policy="NaN without lesion images"))
register(Metric("false_lesion_rate", "False Lesion Rate", false_lesion_rate, needs=("label", "pred_pixels"),
                direction="min", nan_policy="NaN without Normal images"))
