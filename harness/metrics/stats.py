"""Uncertainty and comparisons: bootstrap over images, spread across seeds, paired A-vs-B tests.

The bootstrap is vectorised: indices for all replicates are drawn once, classification metrics
come from one confusion matrix per replicate (a single ``np.bincount``) through the same
:func:`harness.metrics.classification.from_confusion` used for the point estimate, and Dice
summaries from masked reductions. 1000 replicates of 300 images take milliseconds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from harness.metrics.classification import N_CLASSES, check_labels, from_confusion
from harness.metrics.end_to_end import is_lesion
from harness.metrics.segmentation import DICE_THRESHOLDS

_CHUNK = 250  # replicates per block: bounds memory at ~_CHUNK * n_images ints


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot x n`` indices drawn with replacement (seeded, reproducible)."""
    if n < 1:
        raise ValueError(f"cannot bootstrap {n} samples")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, but got n_boot={n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def replicate_metrics(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray | None, idx: np.ndarray, n_classes: int = N_CLASSES
) -> dict[str, np.ndarray]:
    """Metrics of each resample ``idx[b]``: classification keys of ``from_confusion`` and, when
    ``dice`` is given, ``dice_mean``, ``dice_median``, ``dice_ge_<t>`` over lesion images."""
    labels, pred_labels = check_labels(labels, pred_labels, n_classes)
    idx = np.atleast_2d(idx)
    n_boot = idx.shape[0]
    codes = labels * n_classes + pred_labels
    kk = n_classes * n_classes
    flat = (np.arange(n_boot)[:, None] * kk + codes[idx]).ravel()
    cm = np.bincount(flat, minlength=n_boot * kk).reshape(n_boot, n_classes, n_classes)
    out = from_confusion(cm)
    if dice is not None:
        dice = np.asarray(dice, dtype=float)
        keep = is_lesion(labels) & ~np.isnan(dice)
        k, d = keep[idx], dice[idx]
        n_les = k.sum(axis=1).astype(float)
        n_les[n_les == 0] = np.nan
        out["dice_mean"] = np.where(k, d, 0.0).sum(axis=1) / n_les
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
            out["dice_median"] = np.nanmedian(np.where(k, d, np.nan), axis=1)
        for t in DICE_THRESHOLDS:
            out[f"dice_ge_{t:g}"] = (k & (d >= t)).sum(axis=1) / n_les
    return out


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite values; (NaN, NaN) when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [a, 100 - a])
    return float(lo), float(hi)


def bootstrap_ci(
    labels: np.ndarray,
    pred_labels: np.ndarray,
    dice: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """95% (``level``) percentile bootstrap CI over images for every replicated metric."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), but got level={level}")
    reps = bootstrap_replicates(labels, pred_labels, dice, n_boot, seed)
    return {k: percentile_ci(v, level) for k, v in reps.items()}


def bootstrap_replicates(
    labels: np.ndarray, pred_labels: np.ndarray, dice: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap replicates of every metric of :func:`replicate_metrics`.

    The same ``seed`` and number of images give the same resamples, so replicates of two runs on
    the same (sorted) images are paired and can be averaged replicate by replicate.
    """
    idx = bootstrap_indices(np.asarray(labels).size, n_boot, seed)
    parts = [replicate_metrics(labels, pred_labels, dice, idx[i : i + _CHUNK]) for i in range(0, n_boot, _CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ------------------------------------------------------------------------------------------------
# Across seeds


def across_seeds(values: np.ndarray, level: float = 0.95, bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """Mean, std (ddof=1) and t-based CI of the mean of one metric over runs/seeds (NaN ignored).

    With one run the std and CI are NaN: one seed says nothing about seed variance. ``bounds`` clips
    the CI to the metric's range (with 2-3 seeds a t interval easily leaves [0, 1]).
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    nan = float("nan")
    if v.size == 0:
        return {"mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "n": 0}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "std": nan, "ci_low": nan, "ci_high": nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(sps.t.ppf((1 + level) / 2, df=v.size - 1) * std / np.sqrt(v.size))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n": int(v.size)}


# ------------------------------------------------------------------------------------------------
# Paired tests (same images, two pipelines)


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test; ``n`` is the number of informative pairs."""

    method: str
    statistic: float
    pvalue: float
    n: int


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, exact: bool = True) -> PairedTest:
    """McNemar's test on per-image correctness of two classifiers.

    ``exact``: two-sided binomial test on the discordant pairs (b = A right & B wrong,
    c = A wrong & B right); otherwise the chi-square test with continuity correction,
    (|b - c| - 1)^2 / (b + c). No discordant pairs -> p = 1.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be 1-D of equal length, but got {a.shape} and {b_.shape}")
    if a.size == 0:
        raise ValueError("no pairs: McNemar's test needs at least one image")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    if b + c == 0:
        return PairedTest("mcnemar_exact" if exact else "mcnemar_chi2", 0.0, 1.0, 0)
    if exact:
        return PairedTest("mcnemar_exact", float(min(b, c)), float(sps.binomtest(b, b + c, 0.5).pvalue), b + c)
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return PairedTest("mcnemar_chi2", float(stat), float(sps.chi2.sf(stat, 1)), b + c)


def wilcoxon(x: np.ndarray, y: np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of paired values (e.g. per-image Dice of A and B).

    Pairs with a NaN are dropped; zero differences are dropped (Wilcoxon's method); when every
    difference is zero the samples are identical and p = 1.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, but got {x.shape} and {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    n = int(np.count_nonzero(d))
    if d.size == 0:
        raise ValueError("no complete pairs: the Wilcoxon test needs at least one pair without NaN")
    if n == 0:
        return PairedTest("wilcoxon", 0.0, 1.0, 0)
    res = sps.wilcoxon(d[d != 0], zero_method="wilcox", alternative="two-sided")
    return PairedTest("wilcoxon", float(res.statistic), float(res.pvalue), n)
