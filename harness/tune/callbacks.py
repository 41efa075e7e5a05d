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
    """One log line per finished run, a warning per failed one, and a tqdm bar on a terminal.

    ``totals`` is the number of runs of each kind this Tuner runs ("trial": search trials, the
    remaining budget on a resume; "final run"), which name them in the messages.
    """

    def __init__(self, totals: dict[str, int]) -> None:
        self.totals = dict(totals)
        self.done = dict.fromkeys(self.totals, 0)
        self.bar = tqdm(total=sum(self.totals.values()), desc="runs", disable=not os.isatty(2), leave=False)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        label = run_label(trial)
        self.done[label] = self.done.get(label, 0) + 1
        r = trial.last_result or {}
        what = "stopped early" if not r.get("final") else ", ".join(
            f"{k}={r[k]:.3f}" for k in SHOWN_METRICS if isinstance(r.get(k), float))
        logger.info("%s %d/%d done (pipeline %s): %s", label, self.done[label], self.totals.get(label, 0),
                    trial_pipeline(trial), what)
        self.bar.update(1)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        logger.warning("%s: trial %s failed (see %s)", run_label(trial), trial.trial_id, trial.local_path)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.bar.close()


def run_label(trial: Any) -> str:
    """How progress messages name a run: "final run" (``config["run"]``) or "trial" (a search trial)."""
    return "final run" if "run" in (trial.config or {}) else "trial"
