"""Paired tests of two pipelines on the same images, as named strategies.

A metric's declaration names its test (``Metric.test``, e.g. ``"mcnemar_correct"``); Table 9 looks
the strategy up here. A strategy is a pure function of two per-image tables aligned on the same
images (index ``image_id``), with the columns of :data:`PER_IMAGE_COLUMNS`, each value pooled over
the seeds of a pipeline (a fraction of seeds for the 0/1 columns). It returns the test's numbers,
or ``None`` when no image is in its scope. Adding a test (e.g. a patient-level one) is one more
``@paired_test`` function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness import MALIGNANT
from harness.metrics.end_to_end import is_lesion
from harness.metrics.stats import mcnemar, wilcoxon
from harness.registry import Registry

PER_IMAGE_COLUMNS: tuple[str, ...] = ("label", "dice", "correct", "called_malignant")
"""label; mean Dice over seeds; fraction of seeds correct; fraction of seeds calling it malignant."""

Outcome = dict[str, Any]
"""n_images, n_informative, first, second (the two pipelines' summary), statistic, p_value."""


@dataclass(frozen=True)
class PairedStrategy:
    """A named paired test: what it is (``test``), on which images (``scope``), and ``fn``."""

    key: str
    test: str
    scope: str
    fn: Callable[[pd.DataFrame, pd.DataFrame], Outcome | None]

    def run(self, first: pd.DataFrame, second: pd.DataFrame) -> Outcome | None:
        return self.fn(first, second)


PAIRED_TESTS: Registry[PairedStrategy] = Registry("paired test")


def paired_test(key: str, test: str, scope: str):
    """Register ``fn(first, second) -> Outcome | None`` as the strategy ``key``."""

    def deco(fn: Callable[[pd.DataFrame, pd.DataFrame], Outcome | None]):
        PAIRED_TESTS.register(key)(PairedStrategy(key, test, scope, fn))
        return fn

    return deco


def get_paired_test(key: str, field: str | None = None) -> PairedStrategy:
    """The strategy ``key``; unknown names raise ``ConfigError`` with "did you mean"."""
    return PAIRED_TESTS.get(key, field)


def _mcnemar_on(first: pd.DataFrame, second: pd.DataFrame, sel: np.ndarray, column: str, positive: bool):
    """McNemar of "``column`` > 1/2 equals ``positive``" (majority of seeds) on the images ``sel``."""
    if not sel.any():
        return None
    a = (first[column].to_numpy()[sel] > 0.5) == positive
    b = (second[column].to_numpy()[sel] > 0.5) == positive
    t = mcnemar(a, b)
    return {"n_images": int(sel.sum()), "n_informative": t.n, "first": float(a.mean()), "second": float(b.mean()),
            "statistic": t.statistic, "p_value": t.pvalue}


def _labels(first: pd.DataFrame) -> np.ndarray:
    return first["label"].to_numpy()


@paired_test("mcnemar_correct", "McNemar (exact)", "all images: correct class")
def mcnemar_correct(first: pd.DataFrame, second: pd.DataFrame) -> Outcome | None:
    return _mcnemar_on(first, second, np.ones(len(first), bool), "correct", True)


@paired_test("mcnemar_malignant", "McNemar (exact)", "malignant images: called malignant")
def mcnemar_malignant(first: pd.DataFrame, second: pd.DataFrame) -> Outcome | None:
    return _mcnemar_on(first, second, _labels(first) == MALIGNANT, "called_malignant", True)


@paired_test("mcnemar_nonmalignant", "McNemar (exact)", "non-malignant images: not called malignant")
def mcnemar_nonmalignant(first: pd.DataFrame, second: pd.DataFrame) -> Outcome | None:
    return _mcnemar_on(first, second, _labels(first) != MALIGNANT, "called_malignant", False)


@paired_test("wilcoxon_dice", "Wilcoxon signed-rank", "lesion images: Dice")
def wilcoxon_dice(first: pd.DataFrame, second: pd.DataFrame) -> Outcome | None:
    lesion = is_lesion(_labels(first))
    da, db = first["dice"].to_numpy(float)[lesion], second["dice"].to_numpy(float)[lesion]
    if not lesion.any() or np.isnan(da).all() or np.isnan(db).all():
        return None
    t = wilcoxon(da, db)
    return {"n_images": int(lesion.sum()), "n_informative": t.n, "first": float(np.nanmean(da)),
            "second": float(np.nanmean(db)), "statistic": t.statistic, "p_value": t.pvalue}
