"""The Optuna record of a study without Ray: creation, reconciliation after a killed driver, counting
and ranking (fast; the end-to-end resume is in test_runner.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from harness.tune.bookkeeping import INTERRUPTED, RETRY_OF, best_trials, count_finished, open_storage, reconcile
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


def test_a_new_study_holds_its_spec_and_one_queued_trial_per_pipeline(storage):
    s = spec()
    assert reconcile(s, storage) == (0, 0)
    study = optuna.load_study(study_name="book", storage=storage)
    assert study.user_attrs["spec"]["name"] == "book"
    waiting = study.get_trials(states=(TrialState.WAITING,))
    # a WAITING trial has no params yet; enqueue_trial keeps them as its fixed parameters
    assert [t.system_attrs.get("fixed_params") for t in waiting] == [{"pipeline": "a"}, {"pipeline": "b"}]


def test_running_trials_of_a_killed_driver_are_failed_and_queued_again(storage):
    s = spec(pipelines=["a"])
    reconcile(s, storage)
    study = optuna.load_study(study_name="book", storage=storage)
    done = finish(study, "a", 0.5)
    finish(study, "a", None, TrialState.FAIL)  # a genuine failure counts against the budget
    running = study.ask()
    running.suggest_categorical("eval.tta", [True, False])

    assert reconcile(s, storage) == (2, 1)
    interrupted = study.trials[running.number]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs[INTERRUPTED] is True
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].user_attrs[RETRY_OF] == running.number
    assert study.trials[done].state == TrialState.COMPLETE
    assert reconcile(s, storage) == (2, 0), "a second resume re-queues nothing and counts the same"


def test_count_finished_and_best_per_pipeline(storage):
    s = spec(pipelines=["a"], sampler="random")
    reconcile(s, storage)
    study = optuna.load_study(study_name="book", storage=storage)
    numbers = {"a1": finish(study, "a", 0.6), "a2": finish(study, "a", 0.8), "b": finish(study, "b", 0.7)}
    finish(study, "a", None, TrialState.PRUNED)
    assert count_finished(study) == 4
    best = best_trials(study, s)
    assert {p: t.number for p, t in best.items()} == {"a": numbers["a2"], "b": numbers["b"]}
    lower = best_trials(study, spec(pipelines=["a"], objectives=[{"metric": "missed_lesion_rate"}]))
    assert lower["a"].number == numbers["a1"]
