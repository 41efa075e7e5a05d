"""`harness study status` on per-pipeline studies (no Ray)."""

from __future__ import annotations

import json

import yaml

from harness.tune.bookkeeping import load_studies, open_storage, reconcile
from harness.tune.paths import StudyPaths
from harness.tune.status import format_status, study_table
from harness.tune.study import StudySpec


def new_study(root, **fields):
    """A study directory with its spec and (empty) per-pipeline Optuna studies: (paths, studies)."""
    spec = StudySpec.model_validate({"name": "st", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"},
                                     "sampler": "random", **fields})
    paths = StudyPaths(root)
    paths.spec.write_text(yaml.safe_dump(json.loads(spec.model_dump_json())))
    storage = open_storage(paths.storage_url)
    reconcile(spec, storage)
    return paths, load_studies(spec, storage)


def test_status_lists_every_pipelines_trials_against_its_budget(tmp_path):
    _, studies = new_study(tmp_path, trials=6, search_space={
        "params": {"eval.tta": {"type": "categorical", "choices": [True, False]}}})
    trial = studies["a"].ask()
    trial.suggest_categorical("eval.tta", [True, False])
    trial.set_user_attr("pipeline", "a")
    studies["a"].tell(trial, 0.7)
    studies["b"].enqueue_trial({"eval.tta": True})  # queued: no user attributes yet

    table, best = study_table(tmp_path)
    assert table[["pipeline", "number", "state"]].values.tolist() == [["a", 0, "COMPLETE"], ["b", 0, "WAITING"]]
    text = format_status(table, best)
    assert "finished / budget: a 1/3, b 0/3" in text and "best a: trial 0 values=[0.7]" in text


def test_status_json_and_csv_name_trial_dirs_after_optuna_trials(tmp_path, capsys):
    import io

    import optuna
    import pandas as pd

    from harness.cli import main

    paths, studies = new_study(tmp_path, trials=2,
                               objectives=[{"metric": "balanced_accuracy"}, {"metric": "dice_mean"}])
    for pipeline, values in (("a", [0.7, 0.5]), ("b", [0.6, float("nan")])):
        trial = studies[pipeline].ask()
        trial.set_user_attr("pipeline", pipeline)
        trial.set_user_attr("trial_dir", paths.trial_run(pipeline, trial.number).name)
        trial.set_user_attr("overrides", {"eval.tta": True})
        if pipeline == "a":
            studies[pipeline].tell(trial, values)
        else:
            studies[pipeline].tell(trial, state=optuna.trial.TrialState.FAIL)
    assert studies["a"].metric_names == ["balanced_accuracy", "dice_mean"], "optuna-dashboard shows the names"

    assert main(["study", "status", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    first = status["trials"][0]
    assert first["trial_dir"] == "trials/a-000" and first["balanced_accuracy"] == 0.7
    assert first["params"] == {"eval.tta": True}
    assert status["trials"][1]["dice_mean"] is None and status["trials"][1]["state"] == "FAIL"
    assert status["budgets"] == {"a": {"finished": 1, "budget": 1}, "b": {"finished": 1, "budget": 1}}
    assert status["best"]["a"]["number"] == 0 and status["best"]["a"]["trial_dir"] == "a-000"

    assert main(["study", "status", str(tmp_path), "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.columns.tolist()[:3] == ["pipeline", "number", "state"]
    assert table.trial_dir.tolist() == ["trials/a-000", "trials/b-000"]


def test_older_studies_get_their_objectives_named_on_resume(tmp_path):
    import optuna

    spec = StudySpec.model_validate({"name": "old", "pipelines": ["a"], "base": {"a": "tiny-a"}, "trials": 1,
                                     "sampler": "random"})
    storage = open_storage(StudyPaths(tmp_path).storage_url)
    optuna.create_study(study_name="old:a", storage=storage, direction="maximize")  # as a harness before names
    reconcile(spec, storage)
    assert load_studies(spec, storage)["a"].metric_names == ["balanced_accuracy"]
