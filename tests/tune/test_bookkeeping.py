"""The Optuna record of a study without Ray: one Optuna study per pipeline, budgets, reconciliation
after a killed driver, counting and ranking (fast; the end-to-end resume is in test_runner.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from harness.errors import ConfigError
from harness.tune.bookkeeping import (
    INTERRUPTED,
    RETRY_OF,
    best_trials,
    count_finished,
    is_legacy,
    load_studies,
    open_storage,
    pipeline_study_name,
    reconcile,
    seconds_spent,
    trial_budgets,
)
from harness.tune.study import StudySpec

SPACE = {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]}}}


def spec(**fields) -> StudySpec:
    raw = {"name": "book", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "search_space": SPACE,
           "trials": 6, "sampler": "random"}
    return StudySpec.model_validate({**raw, **fields})


@pytest.fixture
def storage(tmp_path):
    return open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")


def finish(study: optuna.Study, pipeline: str, value: float | None, state: TrialState = TrialState.COMPLETE) -> int:
    trial = study.ask()
    trial.suggest_categorical("eval.tta", [True, False])
    trial.set_user_attr("pipeline", pipeline)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    return trial.number


def test_a_new_study_is_one_optuna_study_per_pipeline_holding_the_spec(storage):
    s = spec()
    assert reconcile(s, storage) == ({"a": 0, "b": 0}, 0)
    assert sorted(optuna.get_all_study_names(storage)) == ["book:a", "book:b"]
    for p in ("a", "b"):
        study = optuna.load_study(study_name=pipeline_study_name("book", p), storage=storage)
        assert study.user_attrs["spec"]["name"] == "book"
        assert (study.user_attrs["study"], study.user_attrs["pipeline"]) == ("book", p)
        assert study.trials == [], "no trial is enqueued: each pipeline has its own sampler and budget"
    assert set(load_studies(s, storage)) == {"a", "b"} and not is_legacy(s, storage)


def test_the_grid_sampler_enqueues_each_pipelines_own_grid(storage):
    space = {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]},
                        "roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.2,
                                       "when": {"pipeline": ["b"]}}}}
    s = spec(sampler="grid", trials=None, search_space=space)
    assert trial_budgets(s) == {"a": 2, "b": 6}
    reconcile(s, storage)
    studies = load_studies(s, storage)
    fixed = {p: [t.system_attrs["fixed_params"] for t in st.get_trials(states=(TrialState.WAITING,))]
             for p, st in studies.items()}
    assert fixed["a"] == [{"eval.tta": True}, {"eval.tta": False}]
    assert len(fixed["b"]) == 6 and {(f["eval.tta"], f["roi.margin"]) for f in fixed["b"]} == {
        (t, m) for t in (True, False) for m in (0.0, 0.2, 0.4)}


def test_trial_budgets_split_equally_or_per_pipeline():
    assert trial_budgets(spec(trials=6)) == {"a": 3, "b": 3}
    assert trial_budgets(spec(trials=7)) == {"a": 4, "b": 3}, "the remainder goes to the first pipelines"
    assert trial_budgets(spec(trials=None, trials_per_pipeline=4)) == {"a": 4, "b": 4}
    assert trial_budgets(spec(trials=None, trials_per_pipeline={"b": 5, "a": 2})) == {"a": 2, "b": 5}
    assert spec(trials=None, trials_per_pipeline={"a": 2, "b": 5}).n_trials == 7
    assert trial_budgets(spec(trials=7, trials_per_pipeline={"a": 2, "b": 5})) == {"a": 2, "b": 5}


@pytest.mark.parametrize(("fields", "match"), [
    ({"trials": None}, "trials .or trials_per_pipeline. must be set"),
    ({"trials_per_pipeline": {"a": 3}}, "must name every pipeline"),
    ({"trials_per_pipeline": {"a": 3, "b": 3, "c": 1}}, "must name every pipeline"),
    ({"trials": 5, "trials_per_pipeline": 3}, "differs from the sum"),
    ({"trials_per_pipeline": {"a": 0, "b": 6}}, ">= 1"),
])
def test_trials_per_pipeline_is_validated(fields, match):
    from pydantic import ValidationError

    with pytest.raises((ValidationError, ConfigError), match=match):
        spec(**fields)


def test_running_trials_of_a_killed_driver_are_failed_and_queued_again(storage):
    s = spec()
    reconcile(s, storage)
    study = load_studies(s, storage)["b"]
    done = finish(study, "b", 0.5)
    finish(study, "b", None, TrialState.FAIL)  # a genuine failure counts against the budget
    running = study.ask()
    running.suggest_categorical("eval.tta", [True, False])

    assert reconcile(s, storage) == ({"a": 0, "b": 2}, 1)
    interrupted = study.trials[running.number]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs[INTERRUPTED] is True
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].user_attrs[RETRY_OF] == running.number
    assert study.trials[done].state == TrialState.COMPLETE
    assert reconcile(s, storage) == ({"a": 0, "b": 2}, 0), "a second resume re-queues nothing and counts the same"
    assert seconds_spent(study) >= 0


def test_count_finished_and_best_per_pipeline_from_its_own_study(storage):
    s = spec()
    reconcile(s, storage)
    studies = load_studies(s, storage)
    numbers = {"a1": finish(studies["a"], "a", 0.6), "a2": finish(studies["a"], "a", 0.8),
               "b": finish(studies["b"], "b", 0.7)}
    finish(studies["a"], "a", None, TrialState.PRUNED)
    assert count_finished(studies["a"]) == 3 and count_finished(studies["b"]) == 1
    best = best_trials(studies.values(), s)
    assert {p: t.number for p, t in best.items()} == {"a": numbers["a2"], "b": numbers["b"]}
    lower = best_trials(studies.values(), spec(objectives=[{"metric": "missed_lesion_rate"}]))
    assert lower["a"].number == numbers["a1"]


def test_a_legacy_single_study_is_still_read(storage):
    s = spec()
    study = optuna.create_study(study_name="book", storage=storage, direction="maximize")
    finish(study, "a", 0.6)
    finish(study, "b", 0.7)
    assert is_legacy(s, storage)
    assert list(load_studies(s, storage)) == ["*"]
    best = best_trials(load_studies(s, storage).values(), s)
    assert {p: t.values[0] for p, t in best.items()} == {"a": 0.6, "b": 0.7}
