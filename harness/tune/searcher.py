"""OptunaSearch that knows the harness's trial protocol (imported lazily: it pulls in Ray)."""

from __future__ import annotations

import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from harness.tune.space import SearchSpace, suggest


class SpaceFunction:
    """Define-by-run space (a picklable object, since Tune checkpoints the searcher)."""

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
        if cfg is not None:
            ot = self._ot_trials[trial_id]
            ot.set_user_attr("ray_trial_id", trial_id)
            ot.set_user_attr("pipeline", cfg["_pipeline"])
            ot.set_user_attr("overrides", cfg["_overrides"])
        return cfg

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        return None

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
            values = [result.get(m) for m in self._objective_metrics]
            if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
                return self._tell(trial_id, optuna.trial.TrialState.FAIL)
        return super().on_trial_complete(trial_id, result, error)
