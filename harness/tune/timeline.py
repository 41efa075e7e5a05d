"""The stage-aligned time axis of a trial's per-epoch reports, shared by the trainable and the scheduler.

A pipeline's stages train one after the other and each may stop early, so a trial's n-th report can
come from any stage. On the stage-aligned axis every stage owns a fixed window: stage k's epoch e
reports at ``stage_time = offset_k + e``, where ``offset_k`` sums the *planned* maximum epochs of the
stages before it (the pipeline's epoch plan, widened to the largest ``<section>.optim.epochs`` the search
space can draw). Early stopping therefore never shifts a later stage, and equal ``stage_time`` means
the same stage at the same epoch for every trial of the pipeline.

The reported ``proxy`` is oriented like the study's first objective: stage validation metrics
(balanced accuracy, Dice, their mean) are always higher-is-better (the engine keeps the maximum), so
``proxy`` is the stage metric for a maximised objective and its negative for a minimised one, and the
scheduler runs in the objective's mode. The raw value is reported as ``stage_metric``.

No Ray import here: ``harness trial`` (a W&B agent) and the driver use it without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.tune.study import StudySpec

PROXY = "proxy"
"""Metric of intermediate reports: the running stage's validation metric, oriented like the objective."""
STAGE_TIME = "stage_time"
"""Time attribute of intermediate reports: stage offset in the epoch plan + epoch within the stage."""
STAGE_METRIC = "stage_metric"
"""The stage's validation metric as the engine computed it (higher is better)."""
REPLAYED = "replayed"
"""True on reports replayed from the stage cache: recorded by the scheduler, never a reason to stop."""


def stage_plan(spec: StudySpec, pipeline: str) -> tuple[tuple[str, int], ...]:
    """(stage, most epochs any trial of ``pipeline`` can train it) in training order.

    The pipeline's epoch plan for the study's base config, widened to the upper bound of a searched
    ``<section>.optim.epochs`` parameter, so that every trial's stages fit in their windows.
    """
    from harness.pipelines.registry import get_pipeline

    p = get_pipeline(pipeline)
    plan = []
    for stage, epochs in p.epoch_plan(spec.run_config(pipeline, {})):
        param = spec.search_space.params.get(f"{p.stage(stage).section}.optim.epochs")
        if param is not None and param.applies(pipeline):
            epochs = max(epochs, *(int(v) for v in param.extremes()))
        plan.append((stage, int(epochs)))
    return tuple(plan)


@dataclass(frozen=True)
class StageTimeline:
    """A pipeline's stage windows on the stage-aligned axis, and the orientation of its proxy."""

    plan: tuple[tuple[str, int], ...]
    sign: float = 1.0
    """+1 for a maximised objective, -1 for a minimised one."""

    @classmethod
    def of(cls, spec: StudySpec, pipeline: str) -> StageTimeline:
        return cls(stage_plan(spec, pipeline), 1.0 if spec.objectives[0].mode == "max" else -1.0)

    def offset(self, stage: str) -> int | None:
        """Planned epochs of the stages before ``stage`` (None: not a stage of the plan)."""
        offset = 0
        for name, epochs in self.plan:
            if name == stage:
                return offset
            offset += epochs
        return None

    @property
    def max_t(self) -> int:
        return sum(n for _, n in self.plan)

    def report(self, stage: str, record: dict[str, Any]) -> dict[str, Any]:
        """The scheduler's fields of one epoch record (``epoch``, ``val_metric``, maybe ``replayed``)."""
        value = float(record["val_metric"])
        out: dict[str, Any] = {PROXY: self.sign * value, STAGE_METRIC: value, "stage": stage,
                               "epoch": int(record["epoch"]), REPLAYED: bool(record.get(REPLAYED, False))}
        offset = self.offset(stage)
        if offset is not None:
            out[STAGE_TIME] = offset + int(record["epoch"])
        return out
