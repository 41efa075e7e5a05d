"""ASHA that compares like with like: one set of brackets per (pipeline, stage) on the stage-aligned axis.

Trials of different task orders report different proxies at the same epoch (A starts with classifier
balanced accuracy, B with segmenter Dice), and within one pipeline early stopping ends a stage at
different epochs in different trials. A single ASHA over the trial's report count would therefore put
one trial's classifier metric and another's segmenter Dice on the same rung. Here:

- every (pipeline, stage) has its own ASHA brackets, with rungs at ``grace_period * reduction_factor**k``
  epochs *into that stage* (stage-aligned time ``offset + grace * rf**k``, see
  :mod:`harness.tune.timeline`), up to the stage's planned epochs; a stage planned for fewer epochs than
  the grace period is never cut;
- a trial that skips a stage's later rungs (its stage stopped early) is never recorded there with the
  next stage's metric: each report only reaches its own stage's brackets;
- the mode is the objective's, and ``proxy`` is oriented to match (timeline docstring);
- reports replayed from the stage cache are recorded (they are real epochs of the same stage config)
  but never stop the trial: finishing a trial whose remaining stages are cached costs seconds;
- the final report (``final=1``, the objective) is not a stage epoch and is never put on a rung;
- the last stage's final planned epoch is never a reason to stop (Ray puts a rung there when
  ``grace * rf**k`` equals the stage's epochs): the trial is trained in full by then, and stopping it
  would only throw its evaluation away and record it as pruned. An earlier stage's last epoch still
  is a rung: stopping there saves training the later stages.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from harness.tune.timeline import PROXY, REPLAYED, STAGE_TIME

STAGE_EPOCH = "stage_epoch"
"""Time attribute of the per-stage brackets: ``stage_time`` minus the stage's offset."""


def trial_pipeline(trial: Any) -> str:
    cfg = trial.config or {}
    return str(cfg.get("_pipeline") or cfg.get("run", {}).get("pipeline") or "?")


class StageAlignedASHA(FIFOScheduler):
    """ASHA brackets per (pipeline, stage); ``plans`` maps a pipeline to its (stage, planned epochs).

    ``mode`` is the first objective's ("max" or "min"); ``proxy`` must be oriented accordingly.
    """

    def __init__(self, plans: dict[str, tuple[tuple[str, int], ...]], *, mode: str, grace_period: int,
                 reduction_factor: float, metric: str = PROXY) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f'mode must be "max" or "min", but got mode={mode!r}')
        self._metric, self._mode = metric, mode
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}
        self._last: set[tuple[str, str]] = {(p, plan[-1][0]) for p, plan in plans.items() if plan}
        self._brackets: dict[tuple[str, str], ASHAScheduler] = {}
        for pipeline, plan in plans.items():
            offset = 0
            for stage, epochs in plan:
                self._windows[(pipeline, stage)] = (offset, epochs)
                if epochs >= grace_period:
                    self._brackets[(pipeline, stage)] = ASHAScheduler(
                        time_attr=STAGE_EPOCH, metric=metric, mode=mode, max_t=epochs, grace_period=grace_period,
                        reduction_factor=reduction_factor, stop_last_trials=False)
                offset += epochs
        self._members: dict[str, set[tuple[str, str]]] = {}  # trial id -> brackets it was added to

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    @property
    def metric(self) -> str | None:
        return self._metric

    def rungs(self, pipeline: str, stage: str) -> list[int]:
        """Stage-aligned times at which trials of ``pipeline`` are compared in ``stage`` (ascending)."""
        key = (pipeline, stage)
        if key not in self._brackets:
            return []
        offset, epochs = self._windows[key]
        end = epochs if key in self._last else epochs + 1
        return sorted(offset + int(m) for b in self._brackets[key]._brackets for m, _ in b._rungs if m < end)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("final") or STAGE_TIME not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        key = (trial_pipeline(trial), str(result.get("stage")))
        bracket = self._brackets.get(key)
        if bracket is None:  # a stage too short to cut, or not in the plan
            return TrialScheduler.CONTINUE
        members = self._members.setdefault(trial.trial_id, set())
        if key not in members:
            bracket.on_trial_add(tune_controller, trial)
            members.add(key)
        epoch = int(result[STAGE_TIME]) - self._windows[key][0]
        action = bracket.on_trial_result(tune_controller, trial,
                                         {STAGE_EPOCH: epoch, self._metric: result[self._metric]})
        if result.get(REPLAYED) or (key in self._last and epoch >= self._windows[key][1]):
            return TrialScheduler.CONTINUE
        return action

    def _forget(self, tune_controller: Any, trial: Any) -> None:
        for key in self._members.pop(trial.trial_id, set()):
            self._brackets[key].on_trial_remove(tune_controller, trial)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._forget(tune_controller, trial)  # the final result is the objective, not a stage epoch

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._forget(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._forget(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{p}/{s}: {b.debug_string()}" for (p, s), b in self._brackets.items()) or "StageAlignedASHA"
