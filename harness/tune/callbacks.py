"""Ray Tune callbacks of the study driver (imported lazily by the tuner builder: it pulls in Ray).

Ray's own progress output is switched off (``verbose=0`` and ``RAY_AIR_NEW_OUTPUT=0``, set in
``harness.tune.tuner``) because it prints per-iteration tables meant for an interactive shell; the
harness logs one line per finished trial instead, which reads well in a terminal, in CI logs and in
the log of a detached driver.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import tune
from tqdm.auto import tqdm

from harness.tune.scheduler import trial_pipeline

logger = logging.getLogger(__name__)

SHOWN_METRICS = ("balanced_accuracy", "dice_mean")
"""Metrics of a finished trial's log line (when it reported them)."""


class ProgressCallback(tune.Callback):
    """One log line per finished trial, a warning per failed one, and a tqdm bar on a terminal.

    ``total`` is the number of trials this Tuner runs (the remaining budget on a resume), ``label``
    names them in the messages ("trial", "final run").
    """

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.bar = tqdm(total=total, desc=label, disable=not os.isatty(2), leave=False)
        self.done = 0

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.done += 1
        r = trial.last_result or {}
        what = "stopped early" if not r.get("final") else ", ".join(
            f"{k}={r[k]:.3f}" for k in SHOWN_METRICS if isinstance(r.get(k), float))
        logger.info("%s %d/%d done (pipeline %s): %s", self.label, self.done, self.total, trial_pipeline(trial), what)
        self.bar.update(1)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        logger.warning("%s: trial %s failed (see %s)", self.label, trial.trial_id, trial.local_path)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.bar.close()
