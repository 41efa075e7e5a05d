"""Test doubles for study runs (in the package, as ``optuna.testing`` is, because Ray workers must be
able to import them: pytest's importlib mode gives test modules names no worker can import).

Pass the epoch hooks to :func:`harness.tune.runner.run_study` as ``epoch_hooks``; they reach every
trial through ``tune.with_parameters``, so production code reads no test switches from the environment.
:func:`toy_trainable` stands in for the real trainable (``study_tuner(..., trainable=...)``) where a
test is about the search, not the training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CrashOnce:
    """Epoch hook: the first epoch (of any trial) that finds ``marker`` missing writes it and kills
    its worker process, a hard crash as an OOM kill or a lost node would cause. The marker holds
    ``"<stage> epoch <n>"`` so that the test can tell where the crash happened."""

    marker: Path

    def __call__(self, stage: str, record: dict[str, Any]) -> None:
        if not self.marker.exists():
            self.marker.write_text(f"{stage} epoch {record['epoch']}")
            os._exit(1)


@dataclass(frozen=True)
class FailEvery:
    """Epoch hook: every epoch of every trial raises ``RuntimeError(message)`` (a study none of whose
    trials completes)."""

    message: str = "injected failure"

    def __call__(self, stage: str, record: dict[str, Any]) -> None:
        raise RuntimeError(self.message)


TOY_SCORES = {"a": 0.84, "b": 0.80}
"""Objective of :func:`toy_trainable` per pipeline (others 0.80): pipeline a dominates."""


def toy_trainable(config: dict[str, Any], spec_json: str, study_dir: str, data_dir: str | None,
                  epoch_hooks: Sequence[Any] = (), run_uid: str = "") -> None:
    """A Ray trainable that follows the study's trial protocol without training anything.

    Same signature as :func:`harness.tune.trainable.ray_trainable` (pass it as ``trainable`` to
    :func:`harness.tune.tuner.study_tuner`): every planned epoch of every stage reports on the
    stage-aligned axis, then the final report carries the objective, ``TOY_SCORES[pipeline]`` plus
    at most 0.01 for ``eval.mask_threshold`` near 0.5, so one pipeline dominates the other. A final run
    (``config["run"]``) reports its objective once.
    """
    from ray import tune

    from harness.tune.study import StudySpec
    from harness.tune.timeline import PROXY, StageTimeline

    spec = StudySpec.model_validate_json(spec_json)
    final = "run" in config
    pipeline, overrides = (config["run"]["pipeline"], config["run"]["overrides"]) if final else (
        config["_pipeline"], config["_overrides"])
    threshold = float(overrides.get("eval.mask_threshold", 0.5))
    score = TOY_SCORES.get(pipeline, 0.80) + 0.01 * (1 - 2 * abs(threshold - 0.5))
    metrics = [o.metric for o in spec.objectives]
    timeline = StageTimeline.of(spec, pipeline)
    for stage, epochs in [] if final else timeline.plan:
        for epoch in range(1, epochs + 1):
            value = score * epoch / epochs
            tune.report({**timeline.report(stage, {"epoch": epoch, "val_metric": value}),
                         **dict.fromkeys(metrics, value), "final": 0})
    tune.report({**dict.fromkeys(metrics, score), PROXY: score, "final": 1})
