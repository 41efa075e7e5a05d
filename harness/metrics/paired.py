"""Paired tests of two pipelines on the same patients, as named strategies.

A metric's declaration names its test (``Metric.test``, e.g. ``"permutation"``); Table 9 looks the
strategy up here and runs it on a :class:`PairedData`: the per-image columns of both pipelines on
the images both evaluated, their runs paired by seed, and each image's patient. A strategy gets
the metrics that name it and returns one outcome per metric (``n_patients``, ``n_images``,
``n_informative``, ``statistic``, ``p_value``), so each Table 9 row is tested on its own metric:

* ``permutation``: paired permutation test of the row's metric difference A - B, swapping the two
  pipelines' predictions of whole patients (all images of a patient together, the same swap in
  every seed pair); the statistic is the difference averaged over seed pairs.
* ``wilcoxon_dice``: Wilcoxon signed-rank test of per-patient mean lesion Dice (each image's Dice
  averaged over seeds, then over the patient's lesion images).
* ``mcnemar_*``: the image-level McNemar tests of earlier reports (images pooled over seeds by
  majority); they treat a patient's images as independent and no Table 9 row uses them.

:func:`paired_difference` gives every row the difference with a paired patient-bootstrap CI.
Adding a test is one more ``@paired_test`` function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import MALIGNANT
from harness.metrics.end_to_end import is_lesion
from harness.metrics.registry import Metric, Sample, compute_metrics
from harness.metrics.stats import (
    _CHUNK,
    mcnemar,
    patient_bootstrap_indices,
    patient_codes,
    patient_swaps,
    percentile_ci,
    permutation_pvalue,
    wilcoxon,
)
from harness.registry import Registry

Outcome = dict[str, Any]
"""n_patients, n_images, n_informative, statistic, p_value (NaN when the test is undefined)."""
Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class PairedData:
    """Two pipelines on the same images: ``first[s]`` and ``second[s]`` are the per-image columns
    (name -> 1-D array, same images in the same order) of seed pair ``s``; ``patients`` gives each
    image's patient. The true ``label`` is the first pipeline's."""

    first: tuple[Columns, ...]
    second: tuple[Columns, ...]
    patients: np.ndarray

    def __post_init__(self) -> None:
        if not self.first or len(self.first) != len(self.second):
            raise ValueError(f"need one or more seed pairs, but got {len(self.first)} and {len(self.second)} runs")
        sizes = {len(v) for cols in (*self.first, *self.second) for v in cols.values()} | {len(self.patients)}
        if len(sizes) != 1:
            raise ValueError(f"every column and the patients must cover the same images, but got lengths "
                             f"{sorted(sizes)}")
        object.__setattr__(self, "patients", np.asarray(self.patients).astype(str))

    @property
    def n_images(self) -> int:
        return len(self.patients)

    @property
    def n_patients(self) -> int:
        return int(np.unique(self.patients).size)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.first[0]["label"]).astype(np.int64)

    def has(self, *names: str) -> bool:
        return all(n in cols for cols in (*self.first, *self.second) for n in names)

    def side(self, which: int, s: int) -> dict[str, np.ndarray]:
        """Seed pair ``s`` of pipeline ``which`` (0: first, 1: second) with the first's labels."""
        cols = dict((self.first if which == 0 else self.second)[s])
        cols["label"] = self.labels
        return cols


StrategyFn = Callable[[PairedData, Sequence[Metric], int, int], dict[str, Outcome]]


@dataclass(frozen=True)
class PairedStrategy:
    """A named paired test: what it is (``test``), what it compares (``scope``), its statistical
    ``unit`` ("patients" or "images") and ``fn(data, metrics, n_resamples, seed)``."""

    key: str
    test: str
    scope: str
    unit: str
    fn: StrategyFn

    def run(self, data: PairedData, metrics: Sequence[Metric], n_resamples: int = 1000,
            seed: int = 0) -> dict[str, Outcome]:
        """One outcome per metric of ``metrics`` the test applies to (keyed by metric key)."""
        return self.fn(data, metrics, n_resamples, seed)


PAIRED_TESTS: Registry[PairedStrategy] = Registry("paired test")


def paired_test(key: str, test: str, scope: str, unit: str = "patients") -> Callable[[StrategyFn], StrategyFn]:
    """Register ``fn(data, metrics, n_resamples, seed) -> {metric key: Outcome}`` as ``key``."""

    def deco(fn: StrategyFn) -> StrategyFn:
        PAIRED_TESTS.register(key)(PairedStrategy(key, test, scope, unit, fn))
        return fn

    return deco


def get_paired_test(key: str, field: str | None = None) -> PairedStrategy:
    """The strategy ``key``; unknown names raise ``ConfigError`` with "did you mean"."""
    return PAIRED_TESTS.get(key, field)


def _nanmean(stack: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN -> NaN
        return np.nanmean(np.stack(stack), axis=0)


def _computable(data: PairedData, metrics: Sequence[Metric]) -> list[Metric]:
    return [m for m in metrics if data.has(*m.needs)]


def _seed_differences(data: PairedData, metrics: list[Metric], idx_first: np.ndarray | None,
                      idx_second: np.ndarray | None, concat: bool) -> dict[str, np.ndarray]:
    """Per metric, the difference first - second averaged over seed pairs, at the resamples
    ``idx_*`` (of each side's columns, or of both sides stacked when ``concat``)."""
    diffs: dict[str, list[np.ndarray]] = {m.key: [] for m in metrics}
    needed = sorted({c for m in metrics for c in m.needs})
    for s in range(len(data.first)):
        a, b = data.side(0, s), data.side(1, s)
        if concat:
            both = {c: np.concatenate([np.asarray(a[c]), np.asarray(b[c])]) for c in needed}
            va = compute_metrics(Sample(both, idx_first), metrics)
            vb = compute_metrics(Sample(both, idx_second), metrics)
        else:
            va = compute_metrics(Sample({c: a[c] for c in needed}, idx_first), metrics)
            vb = compute_metrics(Sample({c: b[c] for c in needed}, idx_second), metrics)
        for m in metrics:
            diffs[m.key].append(va[m.key] - vb[m.key])
    return {k: _nanmean(v) for k, v in diffs.items()}


def _informative_patients(data: PairedData, columns: Sequence[str]) -> int:
    """Patients for whom the two pipelines differ in any of ``columns`` in any seed pair: the
    only ones whose swap can change the statistic."""
    differs = np.zeros(data.n_images, bool)
    for s in range(len(data.first)):
        for c in columns:
            if c == "label":  # the same truth on both sides
                continue
            x = np.asarray(data.first[s][c], dtype=float)
            y = np.asarray(data.second[s][c], dtype=float)
            differs |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
    codes = patient_codes(data.patients)
    return int(np.unique(codes[differs]).size)


@paired_test("permutation", "Permutation (patients)",
             "difference of the row's metric, all images of a patient swapped between the pipelines together")
def permutation(data: PairedData, metrics: Sequence[Metric], n_resamples: int, seed: int) -> dict[str, Outcome]:
    """Paired permutation test of each metric's difference (approximate randomization: Noreen
    1989; Yeh 2000 for F1), valid for metrics that are not means of per-image values (balanced
    accuracy, macro F1, kappa) and exact in the limit of all 2^P patient swaps."""
    todo = _computable(data, metrics)
    if not todo:
        return {}
    n = data.n_images
    base = np.arange(n)
    observed = _seed_differences(data, todo, None, None, concat=False)
    swaps = patient_swaps(data.patients, n_resamples, seed)
    blocks = []
    for i in range(0, n_resamples, _CHUNK):
        sw = swaps[i : i + _CHUNK]
        blocks.append(_seed_differences(data, todo, base + n * sw, base + n * ~sw, concat=True))
    out = {}
    for m in todo:
        permuted = np.concatenate([blk[m.key] for blk in blocks])
        d = float(observed[m.key][0])
        out[m.key] = {"n_patients": data.n_patients, "n_images": n,
                      "n_informative": _informative_patients(data, m.needs), "statistic": d,
                      "p_value": permutation_pvalue(d, permuted)}
    return out


def _patient_means(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Mean of the non-NaN ``values`` of each patient code (NaN for a patient with none)."""
    ok = ~np.isnan(values)
    total = np.bincount(codes, weights=np.where(ok, values, 0.0))
    count = np.bincount(codes, weights=ok.astype(float))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@paired_test("wilcoxon_dice", "Wilcoxon signed-rank (patients)", "per-patient mean Dice of the lesion images")
def wilcoxon_dice(data: PairedData, metrics: Sequence[Metric], n_resamples: int, seed: int) -> dict[str, Outcome]:
    """Wilcoxon signed-rank test of per-patient mean lesion Dice (one pair per patient with a
    lesion image, over the images with a Dice on both sides; zero differences dropped). The same
    test for every Dice row that names it."""
    if not data.has("label", "dice"):
        return {}
    lesion = is_lesion(data.labels)
    if not lesion.any():
        return {}
    da = _nanmean([np.asarray(c["dice"], dtype=float) for c in data.first])[lesion]
    db = _nanmean([np.asarray(c["dice"], dtype=float) for c in data.second])[lesion]
    unpaired = np.isnan(da) | np.isnan(db)  # a patient's mean covers the images both pipelines have
    da[unpaired], db[unpaired] = np.nan, np.nan
    codes = patient_codes(data.patients[lesion])
    x, y = _patient_means(da, codes), _patient_means(db, codes)
    if np.isnan(x).all() or np.isnan(y).all():
        return {}
    t = wilcoxon(x, y)
    outcome = {"n_patients": int(x.size), "n_images": int(lesion.sum()), "n_informative": t.n,
               "statistic": t.statistic, "p_value": t.pvalue}
    return {m.key: dict(outcome) for m in metrics}


def _mcnemar_on(data: PairedData, metrics: Sequence[Metric], sel: np.ndarray, hit: Callable[[Columns], np.ndarray]
                ) -> dict[str, Outcome]:
    """Image-level McNemar of ``hit`` (majority over seeds) on the images ``sel``."""
    if not sel.any() or not data.has("label", "pred_label"):
        return {}
    a = _nanmean([hit(data.side(0, s)).astype(float) for s in range(len(data.first))])[sel] > 0.5
    b = _nanmean([hit(data.side(1, s)).astype(float) for s in range(len(data.first))])[sel] > 0.5
    t = mcnemar(a, b)
    outcome = {"n_patients": int(np.unique(data.patients[sel]).size), "n_images": int(sel.sum()),
               "n_informative": t.n, "statistic": t.statistic, "p_value": t.pvalue}
    return {m.key: dict(outcome) for m in metrics}


def _correct(c: Columns) -> np.ndarray:
    return np.asarray(c["pred_label"]) == np.asarray(c["label"])


def _called_malignant(c: Columns) -> np.ndarray:
    return np.asarray(c["pred_label"]) == MALIGNANT


@paired_test("mcnemar_correct", "McNemar (exact, images)", "all images: correct class", unit="images")
def mcnemar_correct(data: PairedData, metrics: Sequence[Metric], n_resamples: int, seed: int) -> dict[str, Outcome]:
    return _mcnemar_on(data, metrics, np.ones(data.n_images, bool), _correct)


@paired_test("mcnemar_malignant", "McNemar (exact, images)", "malignant images: called malignant", unit="images")
def mcnemar_malignant(data: PairedData, metrics: Sequence[Metric], n_resamples: int, seed: int) -> dict[str, Outcome]:
    return _mcnemar_on(data, metrics, data.labels == MALIGNANT, _called_malignant)


@paired_test("mcnemar_nonmalignant", "McNemar (exact, images)", "non-malignant images: not called malignant",
             unit="images")
def mcnemar_nonmalignant(data: PairedData, metrics: Sequence[Metric], n_resamples: int,
                         seed: int) -> dict[str, Outcome]:
    return _mcnemar_on(data, metrics, data.labels != MALIGNANT, lambda c: ~_called_malignant(c))


# ------------------------------------------------------------------------------------------------
# The effect: difference of the metric with a paired patient-bootstrap CI


def paired_difference(data: PairedData, metrics: Sequence[Metric], n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, dict[str, float]]:
    """Per metric: its value for each pipeline (mean over seed pairs), the difference
    first - second and its percentile CI from a paired patient bootstrap (the same patients
    resampled for both pipelines and every seed pair)."""
    todo = _computable(data, metrics)
    if not todo:
        return {}
    needed = sorted({c for m in todo for c in m.needs})
    values = [[compute_metrics(Sample({c: data.side(w, s)[c] for c in needed}), todo) for s in range(len(data.first))]
              for w in (0, 1)]
    idx = patient_bootstrap_indices(data.patients, n_boot, seed)
    blocks = [_seed_differences(data, todo, idx[i : i + _CHUNK], idx[i : i + _CHUNK], concat=False)
              for i in range(0, n_boot, _CHUNK)]
    out = {}
    for m in todo:
        first = float(_nanmean([v[m.key] for v in values[0]])[0])
        second = float(_nanmean([v[m.key] for v in values[1]])[0])
        lo, hi = percentile_ci(np.concatenate([blk[m.key] for blk in blocks]), level)
        out[m.key] = {"first": first, "second": second, "difference": first - second, "ci_low": lo, "ci_high": hi}
    return out
