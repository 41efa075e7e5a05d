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


def test_per_pipeline_studies_read_as_one_summary_and_legacy_databases_still_read(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    make_study_db(new, n_trials=12)
    make_study_db(old, n_trials=12, per_pipeline=False)
    (s_new,), (s_old,) = ST.load_study_summaries(new), ST.load_study_summaries(old)
    assert s_new.name == s_old.name == "fake-study"
    for s in (s_new, s_old):
        assert len(s.trials) == 13 and set(s.importances) == {"A", "B"}
        assert ST.state_counts(s).set_index("pipeline").loc["B", "FAIL"] == 1
    pd.testing.assert_frame_equal(ST.best_configs(s_new).drop(columns="trial"),
                                  ST.best_configs(s_old).drop(columns="trial"))
    assert ST.best_configs(s_new)["trial"].max() < 6, "trial numbers count within a pipeline's own study"
    assert not any("before each pipeline" in n for n in s_new.notes)
    assert any("before each pipeline had its own Optuna study" in n for n in s_old.notes)


def simplex_study(url: str) -> None:
    """Pipeline b's study with raw simplex draws as Optuna stores them and the weights the runs used."""
    from harness.tune.space import simplex_weights

    study = optuna.create_study(study_name="w:b", storage=url, direction="maximize")
    study.set_user_attr("study", "w")
    study.set_user_attr("pipeline", "b")
    fields = ["segmenter.loss.dice", "segmenter.loss.focal", "segmenter.loss.lovasz"]
    dist = optuna.distributions.FloatDistribution(1e-6, 1.0)
    rng = np.random.default_rng(0)
    for _ in range(12):
        raw = rng.uniform(1e-6, 1.0, 3).tolist()
        weights = dict(zip(fields, simplex_weights(raw), strict=True))
        study.add_trial(optuna.trial.create_trial(
            params={f"simplex.{f}": r for f, r in zip(fields, raw, strict=True)},
            distributions={f"simplex.{f}": dist for f in fields}, value=0.5 + 0.4 * weights[fields[0]],
            user_attrs={"pipeline": "b", "overrides": weights}))


def test_simplex_weights_are_shown_as_the_effective_normalised_weights(tmp_path):
    simplex_study(f"sqlite:///{tmp_path / 'optuna.db'}")
    (s,) = ST.load_study_summaries(tmp_path)
    best = ST.best_configs(s).iloc[0]
    weights = [best[f"segmenter.loss.{k}"] for k in ("dice", "focal", "lovasz")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5), "normalised weights, not raw draws"
    assert not any(c.startswith("simplex.") for c in ST.best_configs(s).columns)
    assert set(s.importances["B"]) == {"segmenter.loss.dice", "segmenter.loss.focal", "segmenter.loss.lovasz"}
    assert max(s.importances["B"], key=s.importances["B"].get) == "segmenter.loss.dice", "the value follows dice"
    trial = optuna.load_study(study_name="w:b", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials[0]
    params, dists = ST.effective_params(trial)
    assert set(params) == set(dists) and all(0 <= params[k] <= 1 for k in params)


def test_captions_say_asha_stopped_trials_are_pruned(study_dir, tmp_path):
    from harness.report.sections import study_section

    section, _ = study_section(study_dir, tmp_path)
    text = " ".join(map(str, section.blocks))
    assert "PRUNED" in text and "count as complete" not in text
    assert "ASHA" in ST.__doc__ and "stored as PRUNED" in ST.__doc__
