"""Classification metrics of the paper (eq. 5, Appendix A), computed from confusion matrices.

Every summary metric is a function of the confusion matrix, so :func:`from_confusion` accepts a
batch of matrices ``(..., K, K)`` and returns arrays of the batch shape: the same code serves one
run (``K x K``) and a bootstrap (``B x K x K``, see :mod:`harness.metrics.stats`).

Conventions (the same as scikit-learn 1.9, which the tests use as the oracle):

* rows of the confusion matrix are true labels, columns predicted labels; labels are 0=Benign,
  1=Malignant, 2=Normal (``harness.CLASS_NAMES``);
* macro/weighted averages run over the classes *present* (in the truth or the predictions);
  a present class whose precision or recall is 0/0 counts 0 in the averages;
* balanced accuracy averages recall over the classes present in the truth;
* per-class precision/recall/F1 are NaN where undefined (0/0);
* Cohen's kappa is NaN when chance agreement is 1; MCC is 0 when undefined (one class only);
* clinical rates (malignant sensitivity, specificity, PPV; benign specificity) are one-vs-rest and
  NaN when their denominator is 0.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from harness import BENIGN, CLASS_NAMES, MALIGNANT

N_CLASSES = len(CLASS_NAMES)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0 (no warnings)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def check_labels(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label vectors: same non-zero length, integers in [0, n_classes)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(f"labels must be 1-D, but got shapes {y_true.shape} and {y_pred.shape}")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} != {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("no samples: cannot compute classification metrics on empty labels")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError(f"{name} must hold integer labels, but got {y[:5]!r}...")
            y = y.astype(int)
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"{name} must be in [0, {n_classes - 1}], but got values {sorted(set(y.tolist()))}")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``K x K`` integer counts, rows = true label, columns = predicted label."""
    y_true, y_pred = check_labels(y_true, y_pred, n_classes)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support, shape ``(..., K)``; NaN where 0/0."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    return {
        "precision": _div(tp, predicted),
        "recall": _div(tp, support),
        "f1": _div(2 * tp, support + predicted),
        "support": support,
    }


def _present_mean(values: np.ndarray, present: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Average over present classes, undefined (NaN) values of present classes counting 0."""
    v = np.where(present, np.nan_to_num(values, nan=0.0), 0.0)
    w = present.astype(float) if weights is None else np.where(present, weights, 0.0)
    return _div((v * w).sum(axis=-1), w.sum(axis=-1))


def one_vs_rest(cm: np.ndarray, positive: int) -> dict[str, np.ndarray]:
    """tp, fn, fp, tn of ``positive`` vs the other classes, shape ``(...)``."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum(axis=(-2, -1))
    tp = cm[..., positive, positive]
    fn = cm[..., positive, :].sum(axis=-1) - tp
    fp = cm[..., :, positive].sum(axis=-1) - tp
    return {"tp": tp, "fn": fn, "fp": fp, "tn": n - tp - fn - fp}


def from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """All summary classification metrics of a (batch of) confusion matrix(es).

    Returns arrays of shape ``cm.shape[:-2]`` (0-d for a single matrix).
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim < 2 or cm.shape[-1] != cm.shape[-2]:
        raise ValueError(f"confusion matrix must be (..., K, K), but got shape {cm.shape}")
    n = cm.sum(axis=(-2, -1))
    pc = per_class(cm)
    support, predicted = pc["support"], cm.sum(axis=-2)
    present = (support + predicted) > 0
    trace = np.trace(cm, axis1=-2, axis2=-1)

    row_dot_col = (support * predicted).sum(axis=-1)
    p_e = _div(row_dot_col, n * n)
    kappa = _div(trace / np.where(n == 0, np.nan, n) - p_e, 1 - p_e)

    cov_tp = trace * n - row_dot_col
    cov_pp = n * n - (predicted * predicted).sum(axis=-1)
    cov_tt = n * n - (support * support).sum(axis=-1)
    den = np.sqrt(cov_pp * cov_tt)
    mcc = np.where(den > 0, _div(cov_tp, den), 0.0)

    mal = one_vs_rest(cm, MALIGNANT)
    ben = one_vs_rest(cm, BENIGN)
    macro_p = _present_mean(pc["precision"], present)
    macro_r = _present_mean(pc["recall"], present)
    return {
        "accuracy": _div(trace, n),
        "balanced_accuracy": _present_mean(pc["recall"], support > 0),
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": _present_mean(pc["f1"], present),
        "macro_f1_harmonic": _div(2 * macro_p * macro_r, macro_p + macro_r),
        "weighted_f1": _present_mean(pc["f1"], present, weights=support),
        "cohen_kappa": kappa,
        "mcc": mcc,
        "malignant_sensitivity": _div(mal["tp"], mal["tp"] + mal["fn"]),
        "malignant_specificity": _div(mal["tn"], mal["tn"] + mal["fp"]),
        "malignant_ppv": _div(mal["tp"], mal["tp"] + mal["fp"]),
        "benign_specificity": _div(ben["tn"], ben["tn"] + ben["fp"]),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> dict[str, float]:
    """Summary metrics of one set of predictions as python floats (NaN allowed)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    return {k: float(v) for k, v in from_confusion(cm).items()}


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES):
    """Appendix A.2 table: one row per class with precision, recall, F1 and support."""
    import pandas as pd

    pc = per_class(confusion_matrix(y_true, y_pred, len(class_names)))
    table = pd.DataFrame({k: v for k, v in pc.items()}, index=pd.Index(class_names, name="class"))
    table["support"] = table["support"].astype(int)
    return table


# ------------------------------------------------------------------------------------------------
# Scores: ROC / PR (one-vs-rest)


def _check_scores(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise ValueError(f"y and score must be 1-D of equal length, but got {y.shape} and {score.shape}")
    if y.size == 0:
        raise ValueError("no samples: cannot compute a curve on empty input")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores must be finite, but got NaN or inf")
    return y, score


def _cumulative_counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tps, fps, thresholds) at each distinct score, descending."""
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(yy)[last].astype(float)
    fps = (last + 1) - tps
    return tps, fps, s[last]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC (Mann-Whitney U with mid-ranks for ties); NaN when one class is absent."""
    y, score = _check_scores(y, score)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise area under the PR curve, sum_n (R_n - R_{n-1}) P_n; NaN without positives."""
    y, score = _check_scores(y, score)
    if not y.any():
        return float("nan")
    tps, fps, _ = _cumulative_counts(y, score)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) through every distinct threshold; NaN rates when a class is absent."""
    y, score = _check_scores(y, score)
    tps, fps, _ = _cumulative_counts(y, score)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return _div(fps, fps[-1]), _div(tps, tps[-1])


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), ending at (0, 1) like scikit-learn; empty arrays without positives."""
    y, score = _check_scores(y, score)
    if not y.any():
        return np.array([]), np.array([])
    tps, fps, _ = _cumulative_counts(y, score)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.r_[recall[::-1], 0.0], np.r_[precision[::-1], 1.0]


def one_vs_rest_scores(y_true: np.ndarray, probs: np.ndarray,
                       class_names: tuple[str, ...] = CLASS_NAMES) -> dict[str, float]:
    """``auc_<class>`` and ``ap_<class>`` for each class from an ``N x K`` probability matrix."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape != (y_true.size, len(class_names)):
        raise ValueError(f"probs must be N x {len(class_names)} = {(y_true.size, len(class_names))}, "
                         f"but got {probs.shape}")
    out: dict[str, float] = {}
    for c, name in enumerate(class_names):
        out[f"auc_{name.lower()}"] = roc_auc(y_true == c, probs[:, c])
        out[f"ap_{name.lower()}"] = average_precision(y_true == c, probs[:, c])
    return out
