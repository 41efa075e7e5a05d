"""Uncertainty and comparisons: bootstrap over patients, spread across seeds, paired tests, Holm.

The statistical unit is the patient (a patient has 1-3 images, and its images are correlated), so
resampling and permuting move all images of a patient together:

* :func:`patient_bootstrap_indices`: a cluster bootstrap, patients drawn with replacement within
  strata of equal image count, so that every replicate has exactly the ``n`` images of the data and
  the vectorised ``B x n`` index contract of :class:`~harness.metrics.registry.Sample` holds. With
  one image per patient it draws exactly :func:`bootstrap_indices` (the image bootstrap).
* :func:`patient_swaps`: the sign flips of a paired permutation test, one per patient.
* :func:`seed_patient_bootstrap`: the interval of a mean over runs (seeds), resampling seeds and
  then patients.

Everything is vectorised: indices for all replicates are drawn once and every registered metric
computes all replicates of a block in one call of its own function (the one ``run_metrics``
uses): classification metrics from one confusion matrix per replicate (a single ``np.bincount``),
Dice summaries from masked reductions. 1000 replicates of 300 images take milliseconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.metrics.classification import N_CLASSES
from harness.metrics.registry import Sample, compute_metrics, get_metric, list_metrics

_CHUNK = 250  # replicates per block: bounds memory at ~_CHUNK * n_images values per column


def bootstrap_indices(n: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot x n`` indices drawn with replacement (seeded, reproducible)."""
    if n < 1:
        raise ValueError(f"cannot bootstrap {n} samples")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, but got n_boot={n_boot}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def patient_codes(patients: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Integer code 0..P-1 of each image's patient, numbered in order of first appearance."""
    p = np.asarray(patients).astype(str)
    if p.ndim != 1:
        raise ValueError(f"patients must be 1-D (one id per image), but got shape {p.shape}")
    _, first, inverse = np.unique(p, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def patient_bootstrap_indices(patients: Sequence[Any] | np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot x n`` image indices of a patient-level (cluster) bootstrap: all images of a drawn
    patient enter the replicate together.

    Patients are drawn with replacement within strata of equal image count (as many 1-image
    patients as there are, as many 2-image patients, ...), so every replicate holds exactly ``n``
    images and metrics stay vectorised over ``B x n`` indices. This conditions on how many patients
    have 1, 2, 3 images (a stratified cluster bootstrap); a stratum of one patient is kept as is.
    With one image per patient it is the image bootstrap: the same draws as
    :func:`bootstrap_indices` with the same seed.
    """
    codes = patient_codes(patients)
    if codes.size < 1:
        raise ValueError(f"cannot bootstrap {codes.size} samples")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, but got n_boot={n_boot}")
    sizes = np.bincount(codes)
    order = np.argsort(codes, kind="stable")  # images grouped by patient, patients in code order
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    rng = np.random.default_rng(seed)
    parts = []
    for k in np.unique(sizes):  # ascending image count
        members = order[starts[sizes == k][:, None] + np.arange(k)]  # P_k x k image indices
        draw = rng.integers(0, members.shape[0], size=(n_boot, members.shape[0]))
        parts.append(members[draw].reshape(n_boot, -1))
    return np.concatenate(parts, axis=1)


def patient_swaps(patients: Sequence[Any] | np.ndarray, n_perm: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_perm x n`` booleans of a paired permutation test over patients: in permutation b, the
    images of a patient swap their two pipelines' predictions together (each patient with
    probability 1/2, independently)."""
    codes = patient_codes(patients)
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, but got n_perm={n_perm}")
    n_patients = int(codes.max()) + 1 if codes.size else 0
    return (np.random.default_rng(seed).random((n_perm, n_patients)) < 0.5)[:, codes]


def replicate_metrics(
    columns: Mapping[str, np.ndarray], idx: np.ndarray, keys: Iterable[str] | None = None, n_classes: int = N_CLASSES
) -> dict[str, np.ndarray]:
    """Registered metrics ``keys`` (default: Table 9's) of each resample ``idx[b]`` of the per-image
    ``columns`` (``label``, ``pred_label``, ``dice``, ...); NaN for a metric whose column is missing."""
    metrics = list_metrics(table9=True) if keys is None else [get_metric(k) for k in keys]
    return compute_metrics(Sample(columns, idx, n_classes), metrics)


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
    columns: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    keys: Iterable[str] | None = None, patients: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """95% (``level``) percentile bootstrap CI of every metric of ``keys``, resampling
    ``patients`` (one id per image; ``None``: every image its own patient)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), but got level={level}")
    reps = bootstrap_replicates(columns, n_boot, seed, keys, patients)
    return {k: percentile_ci(v, level) for k, v in reps.items()}


def bootstrap_replicates(
    columns: Mapping[str, np.ndarray], n_boot: int = 1000, seed: int = 0, keys: Iterable[str] | None = None,
    patients: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``n_boot`` bootstrap replicates of the metrics ``keys`` (:func:`replicate_metrics`),
    resampling ``patients`` (:func:`patient_bootstrap_indices`; ``None``: images).

    The same ``seed`` and patients give the same resamples, so replicates of two runs on the same
    (sorted) images are paired and can be averaged replicate by replicate.
    """
    keys = None if keys is None else list(keys)
    n = len(next(iter(columns.values()))) if columns else 0
    idx = bootstrap_indices(n, n_boot, seed) if patients is None else patient_bootstrap_indices(patients, n_boot, seed)
    if idx.shape[1] != n:
        raise ValueError(f"patients gives {idx.shape[1]} images but the columns have {n}")
    return replicates_at(columns, idx, keys)


def replicates_at(columns: Mapping[str, np.ndarray], idx: np.ndarray, keys: Iterable[str] | None = None
                  ) -> dict[str, np.ndarray]:
    """:func:`replicate_metrics` of the resamples ``idx`` (``B x n``), in blocks that bound memory."""
    keys = None if keys is None else list(keys)
    parts = [replicate_metrics(columns, idx[i : i + _CHUNK], keys) for i in range(0, idx.shape[0], _CHUNK)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ------------------------------------------------------------------------------------------------
# Across seeds


MIN_SEEDS_FOR_T = 3
"""Fewest runs (seeds) for which a t interval of their mean is given: with 2 the t quantile is
12.7 (df = 1) and the interval spans most of a metric's range."""


def across_seeds(values: np.ndarray, level: float = 0.95, bounds: tuple[float, float] | None = None,
                 min_n: int = MIN_SEEDS_FOR_T) -> dict[str, float]:
    """Mean, std (ddof=1) and t-based CI of the mean of one metric over runs/seeds (NaN ignored).

    With one run the std is NaN: one seed says nothing about seed variance. The CI is NaN with
    fewer than ``min_n`` runs (default 3: with 2 the t interval is uninformative); ``bounds`` clips
    it to the metric's range.
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
    if v.size < max(min_n, 2):
        return {"mean": mean, "std": std, "ci_low": nan, "ci_high": nan, "n": int(v.size)}
    half = float(sps.t.ppf((1 + level) / 2, df=v.size - 1) * std / np.sqrt(v.size))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high, "n": int(v.size)}


def seed_patient_bootstrap(replicates: np.ndarray, seed: int = 0) -> np.ndarray:
    """Replicates of a mean over runs (seeds) from a seed-and-patient bootstrap.

    ``replicates[r, b]`` is the metric of run ``r`` on patient resample ``b``, the same patients
    for every run (all runs of a pipeline are evaluated on the same patients, so the test-set
    variation is shared and must not average out over runs). Replicate ``b`` draws ``R`` runs
    with replacement and averages their values at ``b``: seeds resampled, then patients. NaN
    values are left out of the mean; a replicate with none is NaN.
    """
    reps = np.asarray(replicates, dtype=float)
    if reps.ndim != 2 or reps.shape[0] < 1:
        raise ValueError(f"replicates must be runs x resamples, but got shape {reps.shape}")
    n_runs, n_boot = reps.shape
    draws = np.random.default_rng([seed, 1]).integers(0, n_runs, size=(n_boot, n_runs))
    picked = reps[draws, np.arange(n_boot)[:, None]]  # n_boot x n_runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate -> NaN
        return np.nanmean(picked, axis=1)


def permutation_pvalue(observed: float, permuted: np.ndarray) -> float:
    """Two-sided permutation p-value, (1 + #{|d*| >= |d|}) / (1 + B) over the finite ``permuted``
    (never 0: the observed arrangement is one of the permutations; Phipson and Smyth 2010). NaN
    when ``observed`` is NaN or no permutation is finite."""
    d = np.asarray(permuted, dtype=float)
    d = d[np.isfinite(d)]
    if not np.isfinite(observed) or d.size == 0:
        return float("nan")
    extreme = int(np.count_nonzero(np.abs(d) >= abs(observed) - 1e-12))
    return (1 + extreme) / (1 + d.size)


# ------------------------------------------------------------------------------------------------
# Paired tests (same images, two pipelines) and multiplicity


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


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the order given.

    With the m non-NaN p-values sorted, p_(1) <= ... <= p_(m): adjusted p_(i) =
    max over j <= i of min(1, (m - j + 1) p_(j)). NaN entries stay NaN and do not count in m.
    """
    p = np.asarray(list(pvalues) if not isinstance(pvalues, np.ndarray) else pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, but got shape {p.shape}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"p-values must be in [0, 1], but got {p[ok][(p[ok] < 0) | (p[ok] > 1)].tolist()}")
    v = p[ok]
    order = np.argsort(v, kind="stable")
    adjusted = np.empty(v.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((v.size - np.arange(v.size)) * v[order]))
    out = np.full(p.shape, np.nan)
    out[ok] = adjusted
    return out
