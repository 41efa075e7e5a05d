"""Bootstrap, across-seed summaries and paired tests against scipy / hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from harness.metrics import stats as T
from harness.metrics.classification import classification_metrics


def _case(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = np.where(rng.random(n) < 0.75, y, rng.integers(0, 3, n))
    dice = np.where(y < 2, rng.beta(5, 1.5, n), 1.0)
    return y, p, dice


def test_replicates_equal_direct_computation():
    y, p, dice = _case()
    idx = T.bootstrap_indices(y.size, n_boot=7, seed=3)
    rep = T.replicate_metrics({"label": y, "pred_label": p, "dice": dice}, idx)
    for b in range(7):
        i = idx[b]
        direct = classification_metrics(y[i], p[i])
        for k in ("balanced_accuracy", "macro_f1", "cohen_kappa", "malignant_sensitivity", "malignant_specificity"):
            assert rep[k][b] == pytest.approx(direct[k], nan_ok=True), k
        les = dice[i][y[i] < 2]
        assert rep["dice_mean"][b] == pytest.approx(les.mean())
        assert rep["dice_median"][b] == pytest.approx(np.median(les))
        assert rep["dice_ge_0.8"][b] == pytest.approx(np.mean(les >= 0.8))


def test_bootstrap_ci_seeded_and_covers_point_estimate():
    y, p, dice = _case()
    cols = {"label": y, "pred_label": p, "dice": dice}
    a = T.bootstrap_ci(cols, n_boot=300, seed=1)
    b = T.bootstrap_ci(cols, n_boot=300, seed=1)
    assert a == b
    point = classification_metrics(y, p)["balanced_accuracy"]
    lo, hi = a["balanced_accuracy"]
    assert lo < point < hi and hi - lo < 0.3
    # percentile CI of a known distribution
    assert T.percentile_ci(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert all(np.isnan(T.percentile_ci(np.array([np.nan]))))
    with pytest.raises(ValueError, match="n_boot"):
        T.bootstrap_indices(5, 0)


def test_across_seeds_t_interval():
    v = np.array([0.80, 0.82, 0.85, 0.79])
    s = T.across_seeds(v)
    lo, hi = sps.t.interval(0.95, df=3, loc=v.mean(), scale=sps.sem(v))
    assert s["mean"] == pytest.approx(v.mean()) and s["std"] == pytest.approx(v.std(ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))
    one = T.across_seeds(np.array([0.8]))
    assert one["mean"] == 0.8 and np.isnan(one["std"]) and one["n"] == 1


def test_mcnemar_hand_cases():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 1, 1, 0, 1], bool)
    # discordant: A-only = 4, B-only = 1 -> exact p = 2 * P(X <= 1 | n=5, p=.5) = 2 * 6/32
    ex = T.mcnemar(a, b)
    assert ex.pvalue == pytest.approx(12 / 32) and ex.n == 5
    cc = T.mcnemar(a, b, exact=False)
    assert cc.statistic == pytest.approx((3 - 1) ** 2 / 5)
    assert cc.pvalue == pytest.approx(sps.chi2.sf(0.8, 1))
    same = T.mcnemar(a, a)
    assert same.pvalue == 1.0 and same.n == 0
    with pytest.raises(ValueError, match="equal length"):
        T.mcnemar(a, b[:3])


def test_wilcoxon_hand_cases():
    x = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    y = x - np.array([0.01, 0.02, 0.03, 0.04, 0.05])  # all A better, distinct |d|
    r = T.wilcoxon(x, y)
    assert r.pvalue == pytest.approx(2 / 32)  # exact: only the all-positive sign pattern is as extreme
    assert T.wilcoxon(x, x).pvalue == 1.0  # all differences zero
    with_nan = T.wilcoxon(np.r_[x, np.nan], np.r_[y, 0.3])
    assert with_nan.pvalue == pytest.approx(r.pvalue) and with_nan.n == 5
    with pytest.raises(ValueError, match="no complete pairs"):
        T.wilcoxon(np.array([np.nan]), np.array([1.0]))


def test_across_seeds_ci_clipped_to_bounds():
    from harness.metrics.stats import across_seeds

    wide = across_seeds(np.array([0.2, 0.9]), min_n=2)
    assert wide["ci_low"] < 0 and wide["ci_high"] > 1  # t with 1 degree of freedom
    clipped = across_seeds(np.array([0.2, 0.9]), bounds=(0.0, 1.0), min_n=2)
    assert (clipped["ci_low"], clipped["ci_high"]) == (0.0, 1.0) and clipped["mean"] == wide["mean"]


def test_no_t_interval_below_three_seeds():
    two = T.across_seeds(np.array([0.2, 0.9]))
    assert two["mean"] == pytest.approx(0.55) and two["std"] == pytest.approx(np.std([0.2, 0.9], ddof=1))
    assert np.isnan(two["ci_low"]) and np.isnan(two["ci_high"]) and two["n"] == 2
    three = T.across_seeds(np.array([0.2, 0.5, 0.9]))
    lo, hi = sps.t.interval(0.95, df=2, loc=np.mean([0.2, 0.5, 0.9]), scale=sps.sem([0.2, 0.5, 0.9]))
    assert (three["ci_low"], three["ci_high"]) == pytest.approx((lo, hi))


def test_replicates_of_any_registered_metric_and_nan_for_missing_columns():
    y, p, _ = _case()
    idx = T.bootstrap_indices(y.size, n_boot=5, seed=0)
    rep = T.replicate_metrics({"label": y, "pred_label": p}, idx, keys=["accuracy", "dice_mean"])
    assert set(rep) == {"accuracy", "dice_mean"} and np.isnan(rep["dice_mean"]).all()
    assert rep["accuracy"][2] == pytest.approx(np.mean(y[idx[2]] == p[idx[2]]))
    with pytest.raises(Exception, match='Did you mean "dice_mean"'):
        T.replicate_metrics({"label": y, "pred_label": p}, idx, keys=["dice_maen"])


def test_holm_hand_computed():
    # sorted 0.01 < 0.03 < 0.04, m = 3: 3 * 0.01 = 0.03; 2 * 0.03 = 0.06; 1 * 0.04 = 0.04 -> running max 0.06
    assert T.holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    # capped at 1, a single p is unchanged, NaN stays NaN and does not count in m
    assert T.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert T.holm([0.02]) == pytest.approx([0.02])
    out = T.holm([0.01, np.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert T.holm([]).size == 0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        T.holm([0.2, 1.5])


def _holm_rejects(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down procedure itself: reject the i-th smallest while p_(i) <= alpha / (m - i)."""
    order = np.argsort(p)
    reject = np.zeros(p.size, bool)
    for i, j in enumerate(order):
        if p[j] > alpha / (p.size - i):
            break
        reject[j] = True
    return reject


@pytest.mark.parametrize("seed", range(5))
def test_holm_adjusted_p_is_the_smallest_level_rejecting(seed):
    """Oracle: an adjusted p <= alpha exactly when the step-down procedure rejects at alpha."""
    rng = np.random.default_rng(seed)
    p = rng.random(6) ** 3
    adjusted = T.holm(p)
    for alpha in (0.01, 0.05, 0.1, 0.2, 0.5):
        assert ((adjusted <= alpha) == _holm_rejects(p, alpha)).all()
    assert (adjusted >= p).all() and (adjusted <= 1).all()


# ------------------------------------------------------------------------------------------------
# Patients: cluster bootstrap, patient swaps, seed-and-patient bootstrap, permutation p


def _patients(sizes):
    return np.repeat([f"P{k}" for k in range(len(sizes))], sizes)


def test_patient_codes_number_patients_in_order_of_first_appearance():
    assert T.patient_codes(["b", "a", "b", "c", "a"]).tolist() == [0, 1, 0, 2, 1]
    assert T.patient_codes(np.array([7, 7, 3])).tolist() == [0, 0, 1]


def test_patient_bootstrap_with_one_image_per_patient_is_the_image_bootstrap():
    ids = [f"img{i}" for i in range(37)]
    assert np.array_equal(T.patient_bootstrap_indices(ids, 50, seed=4), T.bootstrap_indices(37, 50, seed=4))


def test_patient_bootstrap_moves_the_images_of_a_patient_together():
    sizes = [1, 3, 2, 1, 2, 3, 1, 2, 1, 3]
    patients = _patients(sizes)
    rng = np.random.default_rng(0)
    order = rng.permutation(patients.size)  # images of a patient need not be adjacent
    patients = patients[order]
    idx = T.patient_bootstrap_indices(patients, 400, seed=1)
    assert idx.shape == (400, patients.size)
    counts = np.stack([np.bincount(row, minlength=patients.size) for row in idx])  # draws of each image
    for p in np.unique(patients):
        members = np.flatnonzero(patients == p)
        assert (counts[:, members] == counts[:, members[:1]]).all(), "a patient's images are drawn together"
    # strata of equal image count keep their size: as many 3-image patients drawn as there are
    drawn_3 = counts[:, np.flatnonzero(np.isin(patients, [f"P{k}" for k, s in enumerate(sizes) if s == 3]))].sum(1)
    assert (drawn_3 == 3 * 3).all()
    assert not (counts == 1).all(axis=1).any()  # it resamples
    assert np.array_equal(idx, T.patient_bootstrap_indices(patients, 400, seed=1))  # seeded


def test_patient_interval_is_wider_than_the_image_interval_on_correlated_images():
    """Each patient has 3 images with the same outcome: the image bootstrap sees 3x the
    information there is; the patient bootstrap's SE is the binomial SE over patients (oracle)."""
    rng = np.random.default_rng(5)
    n_patients = 80
    right = rng.random(n_patients) < 0.7
    y = np.repeat(rng.integers(0, 3, n_patients), 3)
    pred = np.where(np.repeat(right, 3), y, (y + 1) % 3)
    cols = {"label": y, "pred_label": pred}
    patients = _patients([3] * n_patients)
    img = T.bootstrap_replicates(cols, 4000, seed=0, keys=["accuracy"])["accuracy"]
    pat = T.bootstrap_replicates(cols, 4000, seed=0, keys=["accuracy"], patients=patients)["accuracy"]
    acc = right.mean()
    assert pat.std() == pytest.approx(np.sqrt(acc * (1 - acc) / n_patients), rel=0.08)
    assert img.std() == pytest.approx(np.sqrt(acc * (1 - acc) / (3 * n_patients)), rel=0.08)
    lo_i, hi_i = T.percentile_ci(img)
    lo_p, hi_p = T.percentile_ci(pat)
    assert (hi_p - lo_p) > 1.5 * (hi_i - lo_i)
    ci = T.bootstrap_ci(cols, 500, seed=0, keys=["accuracy"], patients=patients)["accuracy"]
    assert ci[0] < acc < ci[1]
    with pytest.raises(ValueError, match="patients gives 3 images but the columns have 240"):
        T.bootstrap_replicates(cols, 10, keys=["accuracy"], patients=["a", "b", "c"])


def test_patient_swaps_are_constant_within_a_patient_and_fair():
    patients = _patients([2, 1, 3, 2] * 10)
    sw = T.patient_swaps(patients, 2000, seed=3)
    assert sw.shape == (2000, patients.size) and sw.dtype == bool
    for p in np.unique(patients):
        members = np.flatnonzero(patients == p)
        assert (sw[:, members] == sw[:, members[:1]]).all()
    assert sw.mean() == pytest.approx(0.5, abs=0.02)


def test_seed_patient_bootstrap_resamples_seeds_with_the_patients_shared():
    # two runs whose values do not depend on the patient resample: only the seed draw varies,
    # and the mean of 2 runs drawn with replacement is 0.2, 0.5, 0.8 with probability 1/4, 1/2, 1/4
    reps = np.array([[0.2] * 8000, [0.8] * 8000])
    v = T.seed_patient_bootstrap(reps, seed=0)
    assert set(np.round(v, 12)) == {0.2, 0.5, 0.8}
    assert [np.mean(np.isclose(v, x)) for x in (0.2, 0.5, 0.8)] == pytest.approx([0.25, 0.5, 0.25], abs=0.02)
    # one run: the patient replicates themselves; NaN values left out of the mean
    one = np.array([[0.1, 0.4, 0.7]])
    assert T.seed_patient_bootstrap(one).tolist() == [0.1, 0.4, 0.7]
    with_nan = T.seed_patient_bootstrap(np.array([[0.3, np.nan], [np.nan, np.nan]]), seed=2)
    assert np.isnan(with_nan[1]) and (np.isnan(with_nan[0]) or with_nan[0] == pytest.approx(0.3))
    # replicate b uses column b in every run (the same patients), never another column
    grid = np.array([[0.0, 10.0, 20.0], [1.0, 11.0, 21.0]])
    v = T.seed_patient_bootstrap(grid, seed=1)
    assert 0 <= v[0] <= 1 and 10 <= v[1] <= 11 and 20 <= v[2] <= 21


def test_permutation_pvalue_hand_case():
    # |d*| >= 2 for -3 and 2 of 4 permutations: (1 + 2) / (1 + 4)
    assert T.permutation_pvalue(2.0, np.array([-3.0, 1.0, 2.0, 0.5])) == pytest.approx(0.6)
    assert T.permutation_pvalue(-2.0, np.array([-3.0, 1.0, 2.0, 0.5, np.nan])) == pytest.approx(0.6)
    assert T.permutation_pvalue(0.0, np.zeros(9)) == 1.0
    assert np.isnan(T.permutation_pvalue(np.nan, np.zeros(3))) and np.isnan(T.permutation_pvalue(1.0, [np.nan]))


def test_stratified_patient_bootstrap_agrees_with_the_plain_cluster_bootstrap():
    """Oracle: the textbook cluster bootstrap (draw P patients with replacement, any total of
    images), written as a loop. Stratifying by image count to keep n fixed changes its spread by
    no more than Monte-Carlo noise."""
    rng = np.random.default_rng(7)
    sizes = np.tile([1, 2, 3, 2], 25)  # 100 patients, 200 images
    patients = _patients(sizes)
    right = np.repeat(rng.random(sizes.size) < 0.75, sizes)  # a patient's images share their outcome
    y = np.repeat(rng.integers(0, 3, sizes.size), sizes)
    cols = {"label": y, "pred_label": np.where(right, y, (y + 1) % 3)}
    strat = T.bootstrap_replicates(cols, 3000, seed=0, keys=["balanced_accuracy"],
                                   patients=patients)["balanced_accuracy"]
    members = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    draw = np.random.default_rng(1)
    plain = [classification_metrics(y[i], cols["pred_label"][i])["balanced_accuracy"]
             for i in (np.concatenate([members[k] for k in draw.integers(0, 100, 100)]) for _ in range(3000))]
    assert strat.std() == pytest.approx(np.std(plain), rel=0.08)
