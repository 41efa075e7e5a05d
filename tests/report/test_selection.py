"""The study section's validation-to-test gap of each pipeline's selected configuration."""

from __future__ import annotations

import json
import statistics

import optuna
import pytest

from harness.report.build import build_report
from harness.report.selection import gap_table
from harness.rundir import RunDir
from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """An Optuna study (A selected on 5 folds with attributes, B on 3 folds known only from folds.json, one
    pipeline per Optuna study as the tune engineer may store them) and two final runs per pipeline."""
    d = tmp_path_factory.mktemp("gap") / "s"
    images = make_dataset(d.parent / "data", n=30, size=(64, 48), seed=1).images
    url = f"sqlite:///{d / 'optuna.db'}"
    d.mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, pipeline, values in (("s:a", "a", (0.7, 0.9, 0.8)), ("s:b", "b", (0.6, 0.75))):
        study = optuna.create_study(study_name=name, storage=url, direction="maximize")
        study.set_user_attr("spec", {"objectives": [{"metric": "balanced_accuracy"}]})
        for k, v in enumerate(values):
            t = study.ask()
            t.set_user_attr("pipeline", pipeline)
            t.set_user_attr("ray_trial_id", f"{pipeline}{k}")
            if pipeline == "a":
                t.set_user_attr("fold_values", [v - 0.1, v, v + 0.1, v, v])
                t.set_user_attr("fold_std", 0.07)
            study.tell(t, v)
    (d / "trials" / "b1").mkdir(parents=True)
    (d / "trials" / "b1" / "folds.json").write_text(json.dumps(
        {"fold_values": {"balanced_accuracy": [0.7, 0.75, 0.8]}, "fold_std": {"balanced_accuracy": 0.05}}))
    for pipeline, accuracy in (("a", 0.8), ("b", 0.7)):
        for seed in (1, 2):
            make_run(d / "final" / f"{pipeline}-seed{seed}", images, pipeline, seed=seed, accuracy=accuracy,
                     test_fraction=0.5)
    return d


def test_gap_is_final_test_minus_selected_validation(study_dir):
    metric, gaps = gap_table(study_dir)
    assert metric == "balanced_accuracy" and gaps["pipeline"].tolist() == ["A", "B"]
    a, b = gaps.iloc[0], gaps.iloc[1]
    tests = {p: [RunDir(study_dir / "final" / f"{p}-seed{s}").read_metrics("test")[metric] for s in (1, 2)]
             for p in "ab"}
    assert (a["trial"], a["validation"], a["fold std"], a["selected on"]) == (1, 0.9, 0.07, "5-fold CV")
    assert a["test"] == pytest.approx(statistics.fmean(tests["a"])) and a["seeds"] == 2
    assert a["test std"] == pytest.approx(statistics.stdev(tests["a"]))
    assert a["gap"] == pytest.approx(a["test"] - 0.9)
    assert (b["trial"], b["validation"], b["fold std"], b["selected on"]) == (1, 0.75, 0.05, "3-fold CV")


def test_study_report_shows_the_gap(study_dir, tmp_path):
    build_report([study_dir], out_dir=tmp_path / "rep", n_boot=20, gradcam=False)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Validation-to-test gap of the selected configurations" in html and "5-fold CV" in html


def test_no_storage_no_gap(tmp_path):
    assert gap_table(tmp_path)[1].empty
