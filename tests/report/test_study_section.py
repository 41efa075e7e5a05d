"""Study section: Optuna trials, best so far, importances (with guards), best configs."""

from __future__ import annotations

import shutil

import numpy as np
import optuna
import pandas as pd
import pytest

from harness.errors import DataError
from harness.report import study as ST
from harness.report.build import build_report
from harness.testing.studies import make_study_db


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, fake_root):
    d = tmp_path_factory.mktemp("study") / "s"
    make_study_db(d, n_trials=12)
    (d / "study.yaml").write_text("name: fake-study\n")
    for i, name in enumerate(("a_s1", "b_s1")):
        shutil.copytree(fake_root / name, d / "trials" / f"t{i}")
    for name in ("a_s1", "a_s2", "b_s1", "b_s2"):
        shutil.copytree(fake_root / name, d / "final" / name)
    return d


def test_summary_tables(study_dir):
    (s,) = ST.load_study_summaries(study_dir)
    assert s.objective == "balanced_accuracy" and s.direction == "maximize"
    assert len(s.trials) == 13 and set(s.trials["state"]) == {"COMPLETE", "PRUNED", "FAIL", "RUNNING"}
    best = ST.best_configs(s).set_index("pipeline")
    for p in ("A", "B"):
        done = s.trials[(s.trials.pipeline == p) & (s.trials.state == "COMPLETE")]
        assert best.loc[p, "balanced_accuracy"] == pytest.approx(done["value"].max())
        assert "classifier.lr_head" in best.columns
    counts = ST.state_counts(s).set_index("pipeline")
    assert counts.loc["A", "RUNNING"] == 1 and counts.loc["B", "FAIL"] == 1
    assert set(s.importances) == {"A", "B"}
    assert sum(s.importances["A"].values()) == pytest.approx(1.0)


def test_best_so_far():
    v = np.array([0.5, np.nan, 0.7, 0.6, 0.8])
    assert ST.best_so_far(v, "maximize").tolist() == [0.5, 0.5, 0.7, 0.7, 0.8]
    assert ST.best_so_far(v, "minimize").tolist() == [0.5, 0.5, 0.5, 0.5, 0.5]
    assert np.isnan(ST.best_so_far(np.array([np.nan, 1.0]), "maximize")[0])


def test_importance_guards(tmp_path):
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=1.0,
                                              user_attrs={"pipeline": "a"}))
    imp, why = ST.importances(study, "A")
    assert imp == {} and "at least 2" in why
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=2.0,
                                              user_attrs={"pipeline": "a"}))
    imp, why = ST.importances(study, "A")
    assert imp == {} and "more than one value" in why


def test_study_report_uses_final_runs_and_has_study_section(study_dir, tmp_path):
    result = build_report([study_dir], out_dir=tmp_path / "rep", n_boot=30, gradcam=False)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert 'id="study"' in html and "Best configuration of each pipeline" in html
    assert (tmp_path / "rep" / "figures" / "study_trials_0.png").exists()
    assert (tmp_path / "rep" / "figures" / "study_importance_0.png").exists()
    t9 = pd.read_csv(tmp_path / "rep" / "table9.csv")
    assert t9.loc[0, ["A_runs", "B_runs"]].tolist() == [2, 2]  # from final/
    assert result.out_dir == tmp_path / "rep"


def test_broken_db_is_a_data_error(tmp_path):
    (tmp_path / "optuna.db").write_text("not a database")
    with pytest.raises(DataError, match="cannot read the Optuna storage"):
        ST.load_study_summaries(tmp_path)
    assert ST.load_study_summaries(tmp_path / "none") == []


def test_study_without_runs_still_reports(tmp_path):
    d = tmp_path / "s"
    make_study_db(d, n_trials=6)
    build_report([d], n_boot=10, gradcam=False)
    html = (d / "report" / "index.html").read_text()
    assert html.index('id="study"') < html.index('id="table9"')  # the study comes first when it is all there is
    assert (d / "report" / "table9.csv").read_text().count("\n") == 11
