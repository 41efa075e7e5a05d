"""Ray Tune searchers of a study (imported lazily: they pull in Ray).

:class:`HarnessSearch` is OptunaSearch that knows the harness's trial protocol, for one pipeline and
its own Optuna study. :class:`PerPipelineSearch` owns one of them per pipeline and decides which
pipeline the next trial goes to, so that every pipeline gets the same budget whatever its early scores
(one TPE over a ``pipeline`` categorical spends the budget on the early leader).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from harness.tune.bookkeeping import RETRY_OF
from harness.tune.folds import fold_attrs
from harness.tune.paths import trial_dir_name
from harness.tune.space import SearchSpace, suggest


class SpaceFunction:
    """Define-by-run space of one pipeline (a picklable object, since Tune checkpoints the searcher)."""

    def __init__(self, space: SearchSpace, pipelines: list[str]):
        self.space, self.pipelines = space, pipelines

    def __call__(self, trial: Any) -> dict[str, Any]:
        pipeline, overrides = suggest(self.space, trial, self.pipelines)
        return {"_pipeline": pipeline, "_overrides": overrides}


class HarnessSearch(OptunaSearch):
    """Trials carry their pipeline and overrides as Optuna user attributes; intermediate results
    (stage proxies) are not sent to Optuna; a trial that ends without its final report (stopped by
    the scheduler) is PRUNED, and one whose objective is not finite is FAIL."""

    def __init__(self, *args: Any, objective_metrics: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._objective_metrics = objective_metrics

    def suggest(self, trial_id: str):
        cfg = super().suggest(trial_id)
        if isinstance(cfg, dict):
            ot = self._ot_trials[trial_id]
            ot.set_user_attr("ray_trial_id", trial_id)
            ot.set_user_attr("pipeline", cfg["_pipeline"])
            ot.set_user_attr("overrides", cfg["_overrides"])
            ot.set_user_attr("trial_dir", trial_dir_name(cfg["_pipeline"], ot.number))
            # the trainable names the trial's directory and W&B run after its Optuna trial
            cfg["_trial"] = {"study": self._study_name, "number": ot.number,
                             # a retry of a trial interrupted by a killed driver continues its W&B run
                             "continues": ot.user_attrs.get(RETRY_OF, ot.number)}
        return cfg

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return None

    def rename(self, old: str, new: str) -> None:
        """A trial asked under Ray trial id ``old`` runs as ``new`` (it waited in the study's queue)."""
        ot = self._ot_trials.pop(old)
        self._ot_trials[new] = ot
        ot.set_user_attr("ray_trial_id", new)

    def abandon(self, trial_id: str) -> None:
        """A trial asked but never run (its queue closed at the time budget): PRUNED, as a trial stopped then is."""
        self._tell(trial_id, optuna.trial.TrialState.PRUNED)

    def _tell(self, trial_id: str, state: optuna.trial.TrialState) -> None:
        if self._ot_study is None:  # OptunaSearch creates it once the search properties are set
            raise RuntimeError(f"trial {trial_id} finished before the Optuna study was set up.")
        self._ot_study.tell(self._ot_trials[trial_id], state=state)
        self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if not error and (not result or not result.get("final")):
            return self._tell(trial_id, optuna.trial.TrialState.PRUNED)
        if not error and result:
            for key, value in fold_attrs(result).items():  # a finished Optuna trial cannot take attributes
                self._ot_trials[trial_id].set_user_attr(key, value)
            values = [result.get(m) for m in self._objective_metrics]
            if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
                return self._tell(trial_id, optuna.trial.TrialState.FAIL)
        return super().on_trial_complete(trial_id, result, error)


def next_pipeline(targets: Mapping[str, int], used: Mapping[str, int],
                  seconds: Mapping[str, float] | None = None) -> str | None:
    """The pipeline the next trial goes to, or None when every pipeline has used its trial budget.

    ``targets``: each pipeline's trial budget; ``used``: trials finished or started so far. Among the
    pipelines with budget left, the one with the smallest share of its budget used (equal budgets:
    the fewest trials), or with ``seconds`` (a time-budgeted study) the fewest trial-seconds spent;
    ties go to the study's order (the mapping's order).
    """
    order = pipeline_order(targets, used, seconds)
    return order[0] if order else None


def pipeline_order(targets: Mapping[str, int], used: Mapping[str, int],
                   seconds: Mapping[str, float] | None = None) -> list[str]:
    """Every pipeline with budget left, in :func:`next_pipeline`'s order of preference (the study's
    queue falls back on the next one when the first one's trial would wait for a stage in training)."""
    open_ = [p for p in targets if used.get(p, 0) < targets[p]]
    if seconds is not None:
        return sorted(open_, key=lambda p: seconds.get(p, 0.0))  # sorted is stable: ties keep the study's order
    return sorted(open_, key=lambda p: used.get(p, 0) / targets[p])


class PickledState:
    """Tune searcher checkpoints: the whole state, pickled (Tune saves it with the experiment)."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class PerPipelineSearch(PickledState, Searcher):
    """One :class:`HarnessSearch` per pipeline (its own Optuna study and sampler state), fed in turn.

    ``targets`` are the pipelines' trial budgets and ``done`` the trials that already count against
    them (finished before a resume); ``spent`` the trial-seconds they took. With ``by_time`` the next
    trial goes to the pipeline with the fewest trial-seconds (finished + running), else to the one
    with the fewest trials; results are routed back to the searcher that suggested the trial.

    As a Tune searcher it hands out the first pipeline's next trial; the study's queue
    (:class:`harness.tune.queue.StudyQueue`) instead asks (:meth:`ask`) and starts (:meth:`begin`) trials
    itself, so that a trial can wait while another pipeline's goes first.
    """

    def __init__(self, searchers: dict[str, HarnessSearch], *, targets: Mapping[str, int],
                 done: Mapping[str, int] | None = None, spent: Mapping[str, float] | None = None,
                 by_time: bool = False, metric: str | list[str], mode: str | list[str]) -> None:
        super().__init__(metric=metric, mode=mode)  # type: ignore[arg-type]  # Ray's hints say str only
        missing = set(targets) - set(searchers)
        if missing:
            raise ValueError(f"targets name pipelines without a searcher: {sorted(missing)}")
        self._searchers = searchers
        self._targets = dict(targets)
        self._used = {p: int((done or {}).get(p, 0)) for p in targets}
        self._seconds = {p: float((spent or {}).get(p, 0.0)) for p in targets}
        self._by_time = by_time
        self._owner: dict[str, str] = {}  # Ray trial id -> pipeline
        self._started: dict[str, float] = {}  # running Ray trial id -> monotonic start
        self._live: set[str] = set()  # asked and not complete

    @property
    def used(self) -> dict[str, int]:
        """Trials per pipeline that count against its budget (done before + suggested here)."""
        return dict(self._used)

    @property
    def pipelines(self) -> list[str]:
        return list(self._targets)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return all([s.set_search_properties(metric, mode, config, **spec) for s in self._searchers.values()])

    def _seconds_now(self) -> dict[str, float]:
        now = time.monotonic()
        out = dict(self._seconds)
        for trial_id, t0 in self._started.items():
            out[self._owner[trial_id]] += now - t0
        return out

    def order(self) -> list[str]:
        """Pipelines with budget left, the one owed the next trial first (:func:`pipeline_order`)."""
        return pipeline_order(self._targets, self._used, self._seconds_now() if self._by_time else None)

    def searching(self, pipeline: str) -> bool:
        """Whether ``pipeline`` has budget left or a trial asked and not complete."""
        return self._used[pipeline] < self._targets[pipeline] or any(self._owner[t] == pipeline for t in self._live)

    def ask(self, pipeline: str, trial_id: str) -> dict | None:
        """The pipeline's next trial, asked from its Optuna study under ``trial_id`` (it counts against the
        budget from now on); None when its searcher has none."""
        cfg = self._searchers[pipeline].suggest(trial_id)
        if not isinstance(cfg, dict):
            return None
        self._owner[trial_id] = pipeline
        self._live.add(trial_id)
        self._used[pipeline] += 1
        return cfg

    def begin(self, trial_id: str) -> None:
        """The trial is handed to Tune: its seconds count from now (``by_time``)."""
        self._started[trial_id] = time.monotonic()

    def rename(self, old: str, new: str) -> None:
        """A trial asked as ``old`` is handed to Tune as ``new``."""
        pipeline = self._owner.pop(old)
        self._owner[new] = pipeline
        self._live.discard(old)
        self._live.add(new)
        self._searchers[pipeline].rename(old, new)

    def close(self) -> None:
        """No more trials (the study's time budget is spent): every budget ends at what was asked."""
        self._targets = {p: min(n, self._used[p]) for p, n in self._targets.items()}

    def abandon(self, trial_id: str) -> None:
        """A trial asked and never handed out (the search ended first): PRUNED in its Optuna study."""
        pipeline = self._owner[trial_id]
        self._live.discard(trial_id)
        self._searchers[pipeline].abandon(trial_id)

    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]  # Ray's hint omits FINISHED
        for pipeline in self.order()[:1]:
            cfg = self.ask(pipeline, trial_id)
            if cfg is not None:
                self.begin(trial_id)
            return cfg
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._owner:
            self._searchers[self._owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pipeline = self._owner.get(trial_id)
        if pipeline is None:
            return
        self._live.discard(trial_id)
        t0 = self._started.pop(trial_id, None)
        if t0 is not None:
            self._seconds[pipeline] += time.monotonic() - t0
        self._searchers[pipeline].on_trial_complete(trial_id, result, error)
