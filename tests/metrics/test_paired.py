"""Paired test strategies over patients: hand-computed cases and scipy oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score

from harness.metrics import get_metric
from harness.metrics.paired import PairedData, get_paired_test, paired_difference

SIZES = [1, 2, 3, 1]  # images per patient


def _hand_case():
    """4 patients, 7 images; A always right, B always wrong."""
    patients = np.repeat(["p0", "p1", "p2", "p3"], SIZES)
    y = np.array([0, 1, 1, 2, 2, 2, 0])
    a = {"label": y, "pred_label": y.copy()}
    b = {"label": y, "pred_label": (y + 1) % 3}
    return PairedData((a,), (b,), patients)


def test_permutation_swaps_whole_patients_hand_case():
    """Only the identity and the full swap give |difference| = 1: p = 2 / 2^4 over patients
    (2 / 2^7 = 0.016 if the 7 images were swapped one by one)."""
    data = _hand_case()
    out = get_paired_test("permutation").run(data, [get_metric("balanced_accuracy")], 20000, seed=0)
    o = out["balanced_accuracy"]
    assert o["statistic"] == pytest.approx(1.0) and o["n_patients"] == 4 and o["n_images"] == 7
    assert o["n_informative"] == 4
    assert o["p_value"] == pytest.approx(2 / 16, abs=0.01)


def test_permutation_against_a_loop_with_sklearn_over_two_seed_pairs():
    rng = np.random.default_rng(1)
    patients = np.repeat([f"p{k}" for k in range(25)], rng.integers(1, 4, 25))
    n = patients.size
    y = rng.integers(0, 3, n)
    runs = [np.where(rng.random(n) < acc, y, rng.integers(0, 3, n)) for acc in (0.8, 0.85, 0.6, 0.65)]
    data = PairedData(({"label": y, "pred_label": runs[0]}, {"label": y, "pred_label": runs[1]}),
                      ({"label": y, "pred_label": runs[2]}, {"label": y, "pred_label": runs[3]}), patients)
    m = get_metric("macro_f1")
    out = get_paired_test("permutation").run(data, [m], 300, seed=5)["macro_f1"]

    def f1(p):
        return f1_score(y, p, average="macro", labels=[0, 1, 2], zero_division=0)

    observed = np.mean([f1(runs[0]) - f1(runs[2]), f1(runs[1]) - f1(runs[3])])
    assert out["statistic"] == pytest.approx(observed)
    from harness.metrics.stats import patient_swaps

    extreme = 0
    for sw in patient_swaps(patients, 300, seed=5):  # the same swap in both seed pairs
        d = np.mean([f1(np.where(sw, b, a)) - f1(np.where(sw, a, b)) for a, b in ((runs[0], runs[2]),
                                                                               (runs[1], runs[3]))])
        extreme += abs(d) >= abs(observed) - 1e-12
    assert out["p_value"] == pytest.approx((1 + extreme) / 301)


def test_identical_pipelines_differ_by_nothing():
    data = _hand_case()
    same = PairedData(data.first, data.first, data.patients)
    rows = [get_metric(k) for k in ("balanced_accuracy", "cohen_kappa")]
    out = get_paired_test("permutation").run(same, rows, 200, seed=0)
    assert all(o["p_value"] == 1.0 and o["n_informative"] == 0 for o in out.values())
    diff = paired_difference(same, rows, 200, seed=0)
    assert diff["balanced_accuracy"] == {"first": 1.0, "second": 1.0, "difference": 0.0, "ci_low": 0.0,
                                         "ci_high": 0.0}


def test_paired_difference_resamples_patients_for_both_pipelines():
    rng = np.random.default_rng(2)
    patients = np.repeat([f"p{k}" for k in range(40)], 2)
    y = np.repeat(rng.integers(0, 3, 40), 2)
    a = np.where(np.repeat(rng.random(40) < 0.85, 2), y, (y + 1) % 3)
    b = np.where(np.repeat(rng.random(40) < 0.6, 2), y, (y + 2) % 3)
    data = PairedData(({"label": y, "pred_label": a},), ({"label": y, "pred_label": b},), patients)
    d = paired_difference(data, [get_metric("balanced_accuracy")], 500, seed=0)["balanced_accuracy"]
    expected = balanced_accuracy_score(y, a) - balanced_accuracy_score(y, b)
    assert d["difference"] == pytest.approx(expected) and d["first"] == pytest.approx(balanced_accuracy_score(y, a))
    assert d["ci_low"] < expected < d["ci_high"]


def test_wilcoxon_on_per_patient_mean_lesion_dice_against_scipy():
    # patients: p0 (2 lesion images), p1 (1), p2 (Normal only: not in the test), p3 (3, one NaN Dice), p4..p8
    patients = np.array(["p0", "p0", "p1", "p2", "p2", "p3", "p3", "p3", "p4", "p5", "p6", "p7", "p8"])
    y = np.array([0, 0, 1, 2, 2, 1, 1, 1, 0, 1, 0, 1, 0])
    da = np.array([0.9, 0.7, 0.8, 1.0, 1.0, 0.6, np.nan, 0.9, 0.95, 0.5, 0.85, 0.75, 0.65])
    db = np.array([0.6, 0.6, 0.7, 1.0, 0.0, 0.5, 0.99, 0.8, 0.7, 0.55, 0.6, 0.5, 0.66])
    data = PairedData(({"label": y, "pred_label": y, "dice": da},), ({"label": y, "pred_label": y, "dice": db},),
                      patients)
    rows = [get_metric("dice_mean"), get_metric("dice_median")]
    out = get_paired_test("wilcoxon_dice").run(data, rows, 100, seed=0)
    x = [0.8, 0.8, 0.75, 0.95, 0.5, 0.85, 0.75, 0.65]  # per-patient means, NaN left out (p3: (0.6 + 0.9) / 2)
    z = [0.6, 0.7, 0.65, 0.7, 0.55, 0.6, 0.5, 0.66]  # p3: (0.5 + 0.8) / 2, its NaN image's pair dropped
    ref = sps.wilcoxon(x, z)
    assert out["dice_mean"]["p_value"] == pytest.approx(ref.pvalue) and out["dice_median"] == out["dice_mean"]
    assert out["dice_mean"]["statistic"] == pytest.approx(ref.statistic)
    assert out["dice_mean"]["n_patients"] == 8 and out["dice_mean"]["n_images"] == 11


def test_paired_data_checks_and_strategy_registry():
    with pytest.raises(ValueError, match="same images"):
        PairedData(({"label": np.zeros(3)},), ({"label": np.zeros(3)},), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="seed pairs"):
        PairedData((), (), np.array([]))
    assert get_paired_test("permutation").unit == "patients" and get_paired_test("wilcoxon_dice").unit == "patients"
    assert get_paired_test("mcnemar_correct").unit == "images"  # kept for plug-ins; no Table 9 row uses it
    out = get_paired_test("mcnemar_correct").run(_hand_case(), [get_metric("accuracy")], 10, 0)["accuracy"]
    assert out["n_informative"] == 7 and out["p_value"] == pytest.approx(2 / 2**7)


def test_patient_permutation_keeps_its_level_when_images_of_a_patient_are_alike():
    """Under the null (A and B drawn alike) with images of a patient sharing their outcome, the
    patient permutation test rejects about 5% at alpha 0.05; the image-level version (each image
    its own patient) and McNemar on images reject far more often (1000 sets: 5.2% vs 13.6% and 12.2%)."""
    from harness.metrics.stats import mcnemar

    rng = np.random.default_rng(0)
    sizes = np.tile([1, 2, 3, 2], 25)  # 100 patients, 200 images
    patients = np.repeat([f"p{k}" for k in range(sizes.size)], sizes)
    m, perm = [get_metric("balanced_accuracy")], get_paired_test("permutation")
    rejected = {"patients": 0, "images": 0, "mcnemar": 0}
    n_sets = 200
    for r in range(n_sets):
        y = np.repeat(rng.integers(0, 3, sizes.size), sizes)

        def run(y: np.ndarray) -> np.ndarray:  # an image repeats its patient's outcome with probability 0.8
            shared = np.repeat(rng.random(sizes.size) < 0.8, sizes)
            right = np.where(rng.random(y.size) < 0.8, shared, rng.random(y.size) < 0.8)
            return np.where(right, y, (y + 1 + rng.integers(0, 2, y.size)) % 3)

        a, b = ({"label": y, "pred_label": run(y)} for _ in range(2))
        for unit, ids in (("patients", patients), ("images", np.arange(y.size))):
            p = perm.run(PairedData((a,), (b,), ids), m, 300, r)["balanced_accuracy"]["p_value"]
            rejected[unit] += p < 0.05
        rejected["mcnemar"] += mcnemar(a["pred_label"] == y, b["pred_label"] == y).pvalue < 0.05
    rate = {k: v / n_sets for k, v in rejected.items()}
    assert rate["patients"] <= 0.08, rate
    assert rate["images"] >= 0.1 and rate["mcnemar"] >= 0.1, rate
