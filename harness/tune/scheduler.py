"""ASHA per pipeline: trials of different task orders report different proxies at the same
iteration (A starts with classifier balanced accuracy, B with segmenter Dice), so each pipeline gets
its own ASHA brackets and trials are only ever compared with trials of the same pipeline."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler


def trial_pipeline(trial: Any) -> str:
    cfg = trial.config or {}
    return str(cfg.get("_pipeline") or cfg.get("run", {}).get("pipeline") or "?")


class PerPipelineASHA(FIFOScheduler):
    """Delegates every decision to an ASHAScheduler of the trial's pipeline."""

    def __init__(self, **asha_kwargs: Any):
        super().__init__()
        self._kwargs = asha_kwargs
        self._schedulers: dict[str, ASHAScheduler] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    @property
    def metric(self) -> str | None:
        return self._kwargs.get("metric")

    def _for(self, trial: Any) -> ASHAScheduler:
        key = trial_pipeline(trial)
        if key not in self._schedulers:
            self._schedulers[key] = ASHAScheduler(**self._kwargs)
        return self._schedulers[key]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{p}: {s.debug_string()}" for p, s in self._schedulers.items()) or "PerPipelineASHA"

