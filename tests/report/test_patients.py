"""The patient is the statistical unit of the report: patient bootstrap, the fallback for
predictions.csv without patient ids, seeds resampled with patients, the caption saying so."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from harness.metrics.stats import across_seeds
from harness.report.build import compute
from harness.report.export import table9_markdown
from harness.report.loader import group_by_pipeline, load_run, load_sources
from harness.report.table9 import build_table9
from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run


@pytest.fixture(scope="module")
def correlated(tmp_path_factory):
    """Patients with 1-3 images that share their outcome (as views of one lesion); 3 seeds of A and B."""
    root = tmp_path_factory.mktemp("patients")
    images = make_dataset(root / "data", n=90, size=(64, 48), seed=0, images_per_patient=(3, 2, 3, 1)).images
    return {f"{p}_s{s}": make_run(root / f"{p}_s{s}", images, p, seed=s, accuracy=acc, patient_correlation=1.0)
            for s in (1, 2, 3) for p, acc in (("a", 0.85), ("b", 0.75))}


def _without_patient_ids(run, dest):
    shutil.copytree(run, dest)
    pred = pd.read_csv(dest / "predictions.csv")
    pred.drop(columns="patient_id").to_csv(dest / "predictions.csv", index=False)
    return dest


def test_predictions_without_patient_ids_fall_back_to_images_with_a_warning(correlated, tmp_path, caplog):
    old = _without_patient_ids(correlated["a_s1"], tmp_path / "old_a")
    with caplog.at_level(logging.WARNING):
        run = load_run(old)
    assert not run.patient_ids and (run.predictions["patient_id"] == run.predictions["image_id"]).all()
    assert "no patient_id column" in caplog.text and "own patient" in caplog.text
    new = load_run(correlated["a_s1"])
    assert new.patient_ids and new.predictions["patient_id"].nunique() == 40 < len(new.predictions) == 90
    data = compute(load_sources([old, correlated["b_s1"]]), n_boot=50)
    assert "old_a lacks patient ids" in data.caption and "too narrow" in data.caption
    assert "A: 1 run, 90 images of 90 patients" in data.caption and "B: 1 run, 90 images of 40 patients" in data.caption


def test_patient_interval_is_wider_than_the_image_interval(correlated, tmp_path):
    """The same run, once with its patient ids and once as an old file without: images of a patient
    share their errors, so treating them as independent understates the uncertainty."""
    old = _without_patient_ids(correlated["a_s1"], tmp_path / "old")
    new = load_run(correlated["a_s1"])
    image_level = build_table9({"A": [load_run(old)]}, n_boot=2000)[0].set_index("metric")
    patient_level = build_table9({"A": [new]}, n_boot=2000)[0].set_index("metric")
    for row in ("Balanced Accuracy", "Macro F1", "Cohen's Kappa", "Mean Dice", "Malignant Sensitivity"):
        w_img = image_level.loc[row, "A_ci_high"] - image_level.loc[row, "A_ci_low"]
        w_pat = patient_level.loc[row, "A_ci_high"] - patient_level.loc[row, "A_ci_low"]
        assert w_pat > 1.2 * w_img, (row, w_img, w_pat)
    assert image_level["A"].equals(patient_level["A"])  # the point estimates do not change


def test_three_seeds_give_a_t_interval_and_a_seed_patient_interval(correlated):
    src = load_sources([correlated[f"{p}_s{s}"] for s in (1, 2, 3) for p in "ab"])
    table, tests = build_table9(group_by_pipeline(src.runs), n_boot=300)
    t = table.set_index("metric")
    values = np.array([r.metrics["balanced_accuracy"] for r in src.runs if r.label == "A"])
    s = across_seeds(values, bounds=(0.0, 1.0))
    assert t.loc["Balanced Accuracy", "A_seed_ci_low"] == pytest.approx(s["ci_low"]) and s["n"] == 3
    for p in "AB":  # the seed-and-patient interval adds seed variation to the patient one
        assert (t[f"{p}_hier_ci_low"] <= t[p] + 1e-12).all() and (t[p] <= t[f"{p}_hier_ci_high"] + 1e-12).all()
        hier = (t[f"{p}_hier_ci_high"] - t[f"{p}_hier_ci_low"]).mean()
        assert hier > (t[f"{p}_ci_high"] - t[f"{p}_ci_low"]).mean()
    md = table9_markdown(table)
    assert "; t [" in md
    # paired tests with three seed pairs: the statistic is the mean of the per-seed differences
    row = tests.set_index("metric").loc["Balanced Accuracy"]
    a = [r.metrics["balanced_accuracy"] for r in src.runs if r.label == "A"]
    b = [r.metrics["balanced_accuracy"] for r in src.runs if r.label == "B"]
    assert row["statistic"] == pytest.approx(np.mean(a) - np.mean(b)) == pytest.approx(row["difference"])
    assert row["n_patients"] == 40


def test_caption_names_every_procedure_and_the_unit(correlated):
    two = compute(load_sources([correlated[k] for k in ("a_s1", "a_s2", "b_s1", "b_s2")]), n_boot=100)
    cap = two.caption
    for phrase in ("The statistical unit is the patient", "bootstrap over patients", "B = 100",
                   "seed-and-patient bootstrap", "A, B: 2 seeds, so no t interval", "Permutation (patients)",
                   "100 permutations", "Wilcoxon signed-rank (patients): per-patient mean Dice of the lesion images",
                   "(Mean Dice, Median Dice)", "Macro F1 is the unweighted mean of the per-class F1",
                   "macro_f1_harmonic", "90 images of 40 patients"):
        assert phrase in cap, phrase
    assert "; t [" not in table9_markdown(two.table9)  # two seeds: no t interval shown
    assert " ± " in table9_markdown(two.table9)
