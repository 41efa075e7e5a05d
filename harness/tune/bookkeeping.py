"""Optuna bookkeeping of a study: create it, reconcile it after a killed driver, count and rank trials.

The Optuna database, not Ray's experiment state, is the study's record: Ray's restore cannot resume an
RDB-backed OptunaSearch after a hard kill of the driver (the pickled searcher is older than the
database), so a resume starts a new Tuner on the same Optuna study and this module decides how many
trials are still owed. Only Optuna's public API is used (``Study``, ``optuna.storages`` methods), so
the rules survive Optuna upgrades and hold for any RDB (SQLite, PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.tune.space import grid_points
from harness.tune.study import StudySpec

INTERRUPTED = "interrupted"
"""User attribute of a trial that was RUNNING when its driver died (FAIL, but not the trial's fault)."""
RETRY_OF = "retry_of"
"""User attribute of a trial enqueued again after an interruption: the number of the interrupted one."""


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage object (OptunaSearch needs an object, not a URL); SQLite waits for its lock
    instead of failing when trials and the driver write at once."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def study_exists(name: str, storage: optuna.storages.BaseStorage) -> bool:
    return name in optuna.get_all_study_names(storage)


def directions(spec: StudySpec) -> list[Literal["maximize", "minimize"]]:
    """Optuna directions of the spec's objectives, in order."""
    return ["maximize" if o.mode == "max" else "minimize" for o in spec.objectives]


def create_study(spec: StudySpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """A new study holding its spec; the trials every run must start with are enqueued up front
    (the whole grid, or one trial per pipeline so that each task order is tried before the sampler
    concentrates on one)."""
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=directions(spec))
    study.set_user_attr("spec", json.loads(spec.model_dump_json()))
    if spec.sampler == "grid":
        for pipeline, params in grid_points(spec.search_space, list(spec.pipelines)):
            study.enqueue_trial({"pipeline": pipeline, **params} if len(spec.pipelines) > 1 else params,
                                skip_if_exists=True)
    elif len(spec.pipelines) > 1:
        for pipeline in spec.pipelines[: spec.n_trials]:
            study.enqueue_trial({"pipeline": pipeline})
    return study


def reconcile(spec: StudySpec, storage: optuna.storages.BaseStorage) -> tuple[int, int]:
    """Prepare a study for (re)starting: create it, or after a killed driver mark its RUNNING trials
    FAIL (``interrupted``) and enqueue their parameters again so that they run once more.

    Returns (finished trials, trials re-queued).
    """
    if not study_exists(spec.name, storage):
        create_study(spec, storage)
        return 0, 0
    study = optuna.load_study(study_name=spec.name, storage=storage)
    study_id = storage.get_study_id_from_name(spec.name)
    requeued = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={RETRY_OF: t.number})
        requeued += 1
    return count_finished(study), requeued


def count_finished(study: optuna.Study) -> int:
    """Trials that count against the budget: COMPLETE, PRUNED and genuine failures (a FAIL because
    the driver was killed is re-queued instead, so it must not count twice)."""
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in done or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED)))


def best_trials(study: optuna.Study, spec: StudySpec) -> dict[str, FrozenTrial]:
    """Best COMPLETE trial per pipeline on the first objective (selected on validation).

    Only COMPLETE trials qualify: the searcher stores trials stopped by the scheduler as PRUNED, so
    a trial ranked here was evaluated with its full budget.
    """
    sign = 1 if spec.objectives[0].mode == "max" else -1
    best: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        p = t.user_attrs.get("pipeline")
        if p and (p not in best or sign * t.values[0] > sign * best[p].values[0]):
            best[p] = t
    return best
