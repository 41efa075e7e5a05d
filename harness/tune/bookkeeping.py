"""Optuna bookkeeping of a study: create it, reconcile it after a killed driver, count and rank trials.

Each pipeline of a study has its own Optuna study ``<study>:<pipeline>`` in the same storage (its own
sampler state and budget; optuna-dashboard shows them side by side). The Optuna database, not Ray's
experiment state, is the study's record: Ray's restore cannot resume an RDB-backed OptunaSearch after a
hard kill of the driver (the pickled searcher is older than the database), so a resume starts a new
Tuner on the same Optuna studies and this module decides how many trials each pipeline is still owed.
Only Optuna's public API is used (``Study``, ``optuna.storages`` methods), so the rules survive Optuna
upgrades and hold for any RDB (SQLite, PostgreSQL).
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterable
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.tune.space import grid_points, grid_size
from harness.tune.storage import open_storage as open_storage  # re-exported: callers open storages here
from harness.tune.study import StudySpec

INTERRUPTED = "interrupted"
"""User attribute of a trial that was RUNNING when its driver died (FAIL, but not the trial's fault)."""
RETRY_OF = "retry_of"
"""User attribute of a trial enqueued again after an interruption: the number of the interrupted one."""


def pipeline_study_name(study: str, pipeline: str) -> str:
    """The Optuna study of one pipeline of a study: ``<study>:<pipeline>``."""
    return f"{study}:{pipeline}"


def study_exists(name: str, storage: optuna.storages.BaseStorage) -> bool:
    return name in optuna.get_all_study_names(storage)


def is_legacy(spec: StudySpec, storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` holds the spec's trials in one Optuna study for all pipelines (a harness
    before per-pipeline studies): readable by status and the report, but not resumable."""
    names = set(optuna.get_all_study_names(storage))
    return spec.name in names and not any(pipeline_study_name(spec.name, p) in names for p in spec.pipelines)


def load_studies(spec: StudySpec, storage: optuna.storages.BaseStorage) -> dict[str, optuna.Study]:
    """The Optuna studies holding the spec's trials, by pipeline: ``<study>:<pipeline>`` for each that
    exists, or ``{"*": <study>}`` for a legacy single study; empty before the first run."""
    names = set(optuna.get_all_study_names(storage))
    out = {p: optuna.load_study(study_name=pipeline_study_name(spec.name, p), storage=storage)
           for p in spec.pipelines if pipeline_study_name(spec.name, p) in names}
    if not out and spec.name in names:
        out["*"] = optuna.load_study(study_name=spec.name, storage=storage)
    return out


def directions(spec: StudySpec) -> list[Literal["maximize", "minimize"]]:
    """Optuna directions of the spec's objectives, in order."""
    return ["maximize" if o.mode == "max" else "minimize" for o in spec.objectives]


def trial_budgets(spec: StudySpec) -> dict[str, int]:
    """Each pipeline's trial budget, in the study's order.

    ``trials_per_pipeline`` when set; else ``trials`` split equally (the remainder, at most one trial
    each, goes to the first pipelines); else (grid sampler) each pipeline's own grid size.
    """
    pipelines = list(spec.pipelines)
    if isinstance(spec.trials_per_pipeline, dict):
        return {p: spec.trials_per_pipeline[p] for p in pipelines}
    if isinstance(spec.trials_per_pipeline, int):
        return dict.fromkeys(pipelines, spec.trials_per_pipeline)
    if spec.trials is not None:
        share, extra = divmod(spec.trials, len(pipelines))
        return {p: share + (k < extra) for k, p in enumerate(pipelines)}
    return {p: grid_size(spec.search_space, [p]) for p in pipelines}


def create_study(spec: StudySpec, pipeline: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The new Optuna study of one pipeline, holding the spec (user attributes ``spec``, ``study``,
    ``pipeline``); with the grid sampler, the pipeline's grid points are enqueued up front."""
    study = optuna.create_study(study_name=pipeline_study_name(spec.name, pipeline), storage=storage,
                                directions=directions(spec))
    name_metrics(study, spec)
    study.set_user_attr("spec", json.loads(spec.model_dump_json()))
    study.set_user_attr("study", spec.name)
    study.set_user_attr("pipeline", pipeline)
    if spec.sampler == "grid":
        for _, params in grid_points(spec.search_space, [pipeline]):
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def name_metrics(study: optuna.Study, spec: StudySpec) -> None:
    """Name the study's objectives after the spec's metrics, so that optuna-dashboard (and
    ``study.metric_names``) say "balanced_accuracy" rather than "Objective 0"."""
    with warnings.catch_warnings():  # set_metric_names is marked experimental in Optuna 3.2-5.x
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.metric for o in spec.objectives])


UID = "uid"
"""User attribute of every pipeline study of one study instance: a random id that W&B run ids derive from."""


def study_uid(spec: StudySpec, storage: optuna.storages.BaseStorage) -> str:
    """The study instance's id, the same in every pipeline study (created on first use): a resume keeps
    it, a fresh study directory (new storage) gets a new one, so W&B run ids never collide across them."""
    studies = load_studies(spec, storage)
    uid = next((str(s.user_attrs[UID]) for s in studies.values() if s.user_attrs.get(UID)), None) or uuid.uuid4().hex
    for study in studies.values():
        if study.user_attrs.get(UID) != uid:
            study.set_user_attr(UID, uid)
    return uid


def reconcile(spec: StudySpec, storage: optuna.storages.BaseStorage) -> tuple[dict[str, int], int]:
    """Prepare each pipeline's study for (re)starting: create it, or after a killed driver mark its
    RUNNING trials FAIL (``interrupted``) and enqueue their parameters again so that they run once more.

    Returns (finished trials per pipeline, trials re-queued in all).
    """
    finished: dict[str, int] = {}
    requeued = 0
    for pipeline in spec.pipelines:
        name = pipeline_study_name(spec.name, pipeline)
        if not study_exists(name, storage):
            create_study(spec, pipeline, storage)
            finished[pipeline] = 0
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        if study.metric_names is None:  # a study written before the harness named its objectives
            name_metrics(study, spec)
        study_id = storage.get_study_id_from_name(name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            study.tell(t.number, state=TrialState.FAIL)
            if t.params:  # killed before its parameters were drawn: nothing to repeat, the budget tops up
                study.enqueue_trial(t.params, user_attrs={RETRY_OF: t.number})
                requeued += 1
        finished[pipeline] = count_finished(study)
    return finished, requeued


def count_finished(study: optuna.Study) -> int:
    """Trials that count against the budget: COMPLETE, PRUNED and genuine failures (a FAIL because
    the driver was killed is re-queued instead, so it must not count twice)."""
    return len(_finished(study))


def seconds_spent(study: optuna.Study) -> float:
    """Trial-seconds of the trials that count against the budget (a time-budgeted resume keeps the split)."""
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in _finished(study)
               if t.datetime_complete and t.datetime_start)


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in done or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED))]


def best_trials(studies: Iterable[optuna.Study], spec: StudySpec) -> dict[str, FrozenTrial]:
    """Best COMPLETE trial per pipeline on the first objective (selected on validation), each from its
    pipeline's own study (or, for a legacy single study, by the trials' ``pipeline`` attribute).

    Only COMPLETE trials qualify: the searcher stores trials stopped by the scheduler as PRUNED, so
    a trial ranked here was evaluated with its full budget.
    """
    sign = 1 if spec.objectives[0].mode == "max" else -1
    best: dict[str, FrozenTrial] = {}
    for study in studies:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            p = t.user_attrs.get("pipeline")
            if p and (p not in best or sign * t.values[0] > sign * best[p].values[0]):
                best[p] = t
    return best
