"""Classification metrics against scikit-learn and hand-computed cases, plus invariances."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from harness.metrics import classification as C


def _random_case(seed: int, n: int = 60, k: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    # mostly right, some errors: realistic confusion matrices
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    probs = rng.dirichlet(np.ones(k), n)
    probs[np.arange(n), y] += rng.random(n)
    probs = np.round(probs / probs.sum(1, keepdims=True), 2)  # ties on purpose
    return y, pred, probs


@pytest.mark.parametrize("seed", range(6))
def test_summary_metrics_match_sklearn(seed):
    y, p, _ = _random_case(seed)
    if seed == 5:  # a class never predicted -> undefined precision counts 0 in the macro average
        p = np.where(p == 2, 0, p)
    m = C.classification_metrics(y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "accuracy": skm.accuracy_score(y, p),
            "balanced_accuracy": skm.balanced_accuracy_score(y, p),
            "macro_precision": skm.precision_score(y, p, average="macro", zero_division=0),
            "macro_recall": skm.recall_score(y, p, average="macro", zero_division=0),
            "macro_f1": skm.f1_score(y, p, average="macro", zero_division=0),
            "weighted_f1": skm.f1_score(y, p, average="weighted", zero_division=0),
            "cohen_kappa": skm.cohen_kappa_score(y, p),
            "mcc": skm.matthews_corrcoef(y, p),
        }
    for k, v in expected.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k
    assert C.confusion_matrix(y, p).tolist() == skm.confusion_matrix(y, p, labels=[0, 1, 2]).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_clinical_rates_match_binarised_sklearn(seed):
    y, p, _ = _random_case(seed)
    m = C.classification_metrics(y, p)
    mal_t, mal_p = y == 1, p == 1
    assert m["malignant_sensitivity"] == pytest.approx(skm.recall_score(mal_t, mal_p))
    assert m["malignant_specificity"] == pytest.approx(skm.recall_score(~mal_t, ~mal_p))
    assert m["malignant_ppv"] == pytest.approx(skm.precision_score(mal_t, mal_p))
    assert m["benign_specificity"] == pytest.approx(skm.recall_score(y != 0, p != 0))


def test_hand_computed_case():
    # true:  B B B M M N ; pred: B M B M N N
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 1, 0, 1, 2, 2])
    m = C.classification_metrics(y, p)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # eq. 5
    assert m["malignant_sensitivity"] == pytest.approx(1 / 2)
    assert m["malignant_specificity"] == pytest.approx(3 / 4)  # 4 non-malignant, one called M
    assert m["malignant_ppv"] == pytest.approx(1 / 2)
    assert m["benign_specificity"] == pytest.approx(1.0)  # no non-benign called B
    # kappa: po = 4/6, pe = (3*2 + 2*2 + 1*2) / 36 = 12/36
    assert m["cohen_kappa"] == pytest.approx((4 / 6 - 1 / 3) / (1 - 1 / 3))
    assert m["macro_f1_harmonic"] == pytest.approx(
        2 * m["macro_precision"] * m["macro_recall"] / (m["macro_precision"] + m["macro_recall"])
    )


def test_per_class_table_matches_sklearn_with_nan_for_undefined():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 0, 1, 0, 1])  # Normal never predicted -> precision 0/0
    table = C.per_class_table(y, p)
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=np.nan)
    np.testing.assert_allclose(table["precision"], pr, equal_nan=True)
    np.testing.assert_allclose(table["recall"], rc)
    np.testing.assert_allclose(table["f1"], f1)
    assert table["support"].tolist() == sup.tolist()
    assert list(table.index) == ["Benign", "Malignant", "Normal"]


def test_permutation_invariance():
    y, p, probs = _random_case(11)
    perm = np.random.default_rng(0).permutation(y.size)
    a, b = C.classification_metrics(y, p), C.classification_metrics(y[perm], p[perm])
    assert a == pytest.approx(b, nan_ok=True)
    sa, sb = C.one_vs_rest_scores(y, probs), C.one_vs_rest_scores(y[perm], probs[perm])
    assert sa == pytest.approx(sb, nan_ok=True)


@pytest.mark.filterwarnings("ignore:A single label:UserWarning")
def test_one_class_only():
    y = np.zeros(5, dtype=int)
    m = C.classification_metrics(y, y)
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert m["mcc"] == skm.matthews_corrcoef(y, y) == 0.0
    assert np.isnan(m["cohen_kappa"])  # chance agreement is 1
    assert np.isnan(m["malignant_sensitivity"]) and m["malignant_specificity"] == 1.0
    s = C.one_vs_rest_scores(y, np.tile([1.0, 0.0, 0.0], (5, 1)))
    assert all(np.isnan(v) for k, v in s.items() if k.startswith("auc"))


def test_batched_confusion_equals_loop():
    cms = np.stack([C.confusion_matrix(*_random_case(s)[:2]) for s in range(4)])
    batched = C.from_confusion(cms)
    for i in range(4):
        single = C.from_confusion(cms[i])
        for k in single:
            assert batched[k][i] == pytest.approx(float(single[k]), nan_ok=True), k


@pytest.mark.parametrize(
    "y, p, match",
    [
        ([], [], "no samples"),
        ([0, 1], [0], "differ in length"),
        ([0, 3], [0, 1], r"in \[0, 2\]"),
        ([0, -1], [0, 1], r"in \[0, 2\]"),
        ([0.5, 1], [0, 1], "integer labels"),
    ],
)
def test_bad_labels_raise(y, p, match):
    with pytest.raises(ValueError, match=match):
        C.classification_metrics(np.array(y), np.array(p))


@pytest.mark.parametrize("seed", range(4))
def test_auc_ap_and_curves_match_sklearn(seed):
    y, _, probs = _random_case(seed, n=80)
    s = C.one_vs_rest_scores(y, probs)
    for c, name in enumerate(("benign", "malignant", "normal")):
        yc, sc = y == c, probs[:, c]
        assert s[f"auc_{name}"] == pytest.approx(skm.roc_auc_score(yc, sc))
        assert s[f"ap_{name}"] == pytest.approx(skm.average_precision_score(yc, sc))
        fpr, tpr = C.roc_curve(yc, sc)
        efpr, etpr, _ = skm.roc_curve(yc, sc, drop_intermediate=False)
        np.testing.assert_allclose(fpr, efpr)
        np.testing.assert_allclose(tpr, etpr)
        rec, prec = C.pr_curve(yc, sc)
        eprec, erec, _ = skm.precision_recall_curve(yc, sc)
        np.testing.assert_allclose(rec, erec)
        np.testing.assert_allclose(prec, eprec)


def test_auc_hand_case_and_absent_class():
    # positives score 0.8, 0.4; negatives 0.6, 0.2 -> 3 of 4 pairs ordered
    assert C.roc_auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2])) == pytest.approx(0.75)
    assert np.isnan(C.roc_auc(np.zeros(3), np.arange(3.0)))
    assert np.isnan(C.average_precision(np.zeros(3), np.arange(3.0)))
    with pytest.raises(ValueError, match="N x 3"):
        C.one_vs_rest_scores(np.array([0, 1]), np.ones((2, 2)))


def test_table9_macro_f1_is_the_mean_of_per_class_f1_and_the_harmonic_form_is_not_smaller():
    """Table 9's Macro F1 is scikit-learn's average='macro'; Appendix A's harmonic form of macro
    precision and recall is offered beside it and, the harmonic mean being concave, never below it."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.integers(0, 3, 40)
        p = np.where(rng.random(40) < rng.uniform(0.3, 0.95), y, rng.integers(0, 3, 40))
        m = C.classification_metrics(y, p)
        assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
        mp = precision_score(y, p, average="macro", zero_division=0)
        mr = recall_score(y, p, average="macro", zero_division=0)
        assert m["macro_f1_harmonic"] == pytest.approx(2 * mp * mr / (mp + mr))
        assert m["macro_f1_harmonic"] >= m["macro_f1"] - 1e-12
