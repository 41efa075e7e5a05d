"""Like-for-like pruning: the stage-aligned time axis (timeline) and ASHA per (pipeline, stage), with
fake Tune trials (no Ray cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from ray.tune.schedulers import TrialScheduler

from harness.tune.scheduler import StageAlignedASHA
from harness.tune.study import StudySpec
from harness.tune.timeline import PROXY, REPLAYED, STAGE_METRIC, STAGE_TIME, StageTimeline, stage_plan

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
PLAN_A = (("classifier3", 8), ("segmenter_binary", 8))
PLAN_B = (("segmenter3", 8), ("roi_classifier", 8))


@dataclass
class FakeTrial:
    trial_id: str
    pipeline: str
    config: dict = field(init=False)

    def __post_init__(self) -> None:
        self.config = {"_pipeline": self.pipeline, "_overrides": {}}


def scheduler(mode: str = "max", grace: int = 2) -> StageAlignedASHA:
    return StageAlignedASHA({"a": PLAN_A, "b": PLAN_B}, mode=mode, grace_period=grace, reduction_factor=2)


def report(s: StageAlignedASHA, trial: FakeTrial, stage: str, epoch: int, value: float, *, sign: float = 1.0,
           replayed: bool = False) -> str:
    plan = PLAN_A if trial.pipeline == "a" else PLAN_B
    result = {**StageTimeline(plan, sign).report(stage, {"epoch": epoch, "val_metric": value, REPLAYED: replayed}),
              "final": 0}
    return s.on_trial_result(None, trial, result)


def test_timeline_puts_every_stage_in_a_fixed_window_and_orients_the_proxy():
    up, down = StageTimeline(PLAN_A, 1.0), StageTimeline(PLAN_A, -1.0)
    r = up.report("segmenter_binary", {"epoch": 3, "val_metric": 0.7})
    assert (r[STAGE_TIME], r[PROXY], r[STAGE_METRIC], r[REPLAYED]) == (8 + 3, 0.7, 0.7, False)
    r = down.report("classifier3", {"epoch": 2, "val_metric": 0.7, "replayed": True})
    assert (r[STAGE_TIME], r[PROXY], r[STAGE_METRIC], r[REPLAYED]) == (2, -0.7, 0.7, True)
    assert STAGE_TIME not in up.report("not_a_stage", {"epoch": 1, "val_metric": 0.5})
    assert up.max_t == 16


def test_stage_plan_is_the_epoch_plan_widened_to_searched_epochs():
    raw = {"name": "p", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "trials": 2,
           "overrides": {"classifier.optim.epochs": 3, "segmenter.optim.epochs": 4},
           "search_space": {"params": {"classifier.optim.epochs": {"type": "int", "low": 2, "high": 6,
                                                                   "when": {"pipeline": ["a"]}}}}}
    spec = StudySpec.model_validate(raw)
    assert stage_plan(spec, "a") == (("classifier3", 6), ("segmenter_binary", 4))
    assert stage_plan(spec, "b") == (("segmenter3", 4), ("roi_classifier", 3)), "the parameter applies to a only"
    down = StageTimeline.of(StudySpec.model_validate({**raw, "objectives": [{"metric": "missed_lesion_rate"}]}), "a")
    assert down.sign == -1.0 and StageTimeline.of(spec, "a").sign == 1.0


def test_rungs_lie_inside_each_stage():
    s = scheduler()
    assert s.rungs("a", "classifier3") == [2, 4, 8]
    assert s.rungs("a", "segmenter_binary") == [10, 12], "offset 8 + 2, 4 epochs; not the last stage's end"
    short = StageAlignedASHA({"c": (("joint3", 1),)}, mode="max", grace_period=2, reduction_factor=2)
    assert short.rungs("c", "joint3") == [], "a stage shorter than the grace period is never cut"
    assert report(short, FakeTrial("t", "c"), "joint3", 1, 0.0) == CONTINUE


def test_a_stage_that_stopped_early_is_not_compared_with_the_next_stages_metric():
    s = scheduler()
    full, early = FakeTrial("full", "a"), FakeTrial("early", "a")
    for e in range(1, 9):  # classifier balanced accuracy 0.9 at every rung (2, 4, 8)
        assert report(s, full, "classifier3", e, 0.9) == CONTINUE
    for e in range(1, 4):  # early stopping ends this trial's classifier stage after 3 epochs
        assert report(s, early, "classifier3", e, 0.95) == CONTINUE
    # its first segmenter epochs (Dice 0.3) come at stage time 9, 10: a single ASHA over the trial's
    # report count would put this Dice on the classifier's rung 4 or 8 next to balanced accuracy 0.9
    assert report(s, early, "segmenter_binary", 1, 0.3) == CONTINUE
    assert report(s, early, "segmenter_binary", 2, 0.3) == CONTINUE, "first at the segmenter's rung 10"
    worse = FakeTrial("worse", "a")
    for e in range(1, 9):
        report(s, worse, "classifier3", e, 0.95)
    assert report(s, worse, "segmenter_binary", 1, 0.1) == CONTINUE
    assert report(s, worse, "segmenter_binary", 2, 0.1) == STOP, "Dice compared with Dice at the same epoch"


def test_within_a_stage_the_worse_trial_is_stopped_at_a_rung():
    s = scheduler()
    good, bad = FakeTrial("good", "a"), FakeTrial("bad", "a")
    assert [report(s, good, "classifier3", e, 0.8) for e in (1, 2)] == [CONTINUE, CONTINUE]
    assert report(s, bad, "classifier3", 1, 0.5) == CONTINUE, "grace period"
    assert report(s, bad, "classifier3", 2, 0.5) == STOP


def test_pipelines_are_never_compared():
    s = scheduler()
    for e in (1, 2):
        report(s, FakeTrial("a1", "a"), "classifier3", e, 0.99)
    b1 = FakeTrial("b1", "b")
    assert [report(s, b1, "segmenter3", e, 0.1) for e in (1, 2)] == [CONTINUE, CONTINUE]


def test_a_minimised_objective_runs_in_min_mode_on_the_negated_stage_metric():
    s = scheduler(mode="min")
    good, bad = FakeTrial("good", "a"), FakeTrial("bad", "a")
    for e in (1, 2):  # proxy = -Dice/-balanced accuracy: lower proxy = better stage, as for the objective
        assert report(s, good, "classifier3", e, 0.8, sign=-1.0) == CONTINUE
    report(s, bad, "classifier3", 1, 0.5, sign=-1.0)
    assert report(s, bad, "classifier3", 2, 0.5, sign=-1.0) == STOP, "the lower stage metric is the worse trial"
    with pytest.raises(ValueError, match="mode must be"):
        StageAlignedASHA({"a": PLAN_A}, mode="maximize", grace_period=2, reduction_factor=2)


def test_replayed_epochs_are_recorded_but_never_stop_the_trial():
    s = scheduler()
    first, cached, third = FakeTrial("first", "a"), FakeTrial("cached", "a"), FakeTrial("third", "a")
    for e in (1, 2):
        report(s, first, "classifier3", e, 0.9)
    # replayed from the stage cache: far below the cutoff, yet the trial goes on (finishing it costs seconds)
    assert [report(s, cached, "classifier3", e, 0.1, replayed=True) for e in (1, 2)] == [CONTINUE, CONTINUE]
    # ... and it was recorded: the rung holds {0.9, 0.1}, median cutoff 0.5, so 0.6 survives (alone: 0.9, stopped)
    report(s, third, "classifier3", 1, 0.6)
    assert report(s, third, "classifier3", 2, 0.6) == CONTINUE


def test_the_final_report_is_never_put_on_a_rung_and_completion_forgets_the_trial():
    s = scheduler()
    t = FakeTrial("t", "a")
    report(s, t, "classifier3", 1, 0.9)
    assert s.on_trial_result(None, t, {"final": 1, PROXY: 0.1, STAGE_TIME: 2, "stage": "classifier3"}) == CONTINUE
    s.on_trial_complete(None, t, {"final": 1, PROXY: 0.1})
    other = FakeTrial("other", "a")
    report(s, other, "classifier3", 1, 0.2)
    assert report(s, other, "classifier3", 2, 0.2) == CONTINUE, "the final 0.1 was not recorded at rung 2"
    s.on_trial_remove(None, other)
    s.on_trial_error(None, other)  # forgetting twice is harmless


def test_a_fully_trained_trial_is_never_stopped_at_the_last_stages_final_epoch():
    """grace 2, rf 2, 8 epochs: Ray's brackets have a rung at epoch 8, the stage's end. Stopping a trial there
    would discard a fully trained pipeline; an earlier stage's end still stops (it saves the next stage)."""
    s = scheduler()
    good, bad = FakeTrial("good", "a"), FakeTrial("bad", "a")
    for e in range(1, 9):
        report(s, good, "classifier3", e, 0.9)
        report(s, bad, "classifier3", e, 0.9)
    for e in range(1, 9):
        assert report(s, good, "segmenter_binary", e, 0.9) == CONTINUE
    assert report(s, bad, "segmenter_binary", 1, 0.95) == CONTINUE
    for e in range(2, 8):
        report(s, bad, "segmenter_binary", e, 0.95)
    assert report(s, bad, "segmenter_binary", 8, 0.1) == CONTINUE, "trained in full: evaluate, do not prune"
    early, late = FakeTrial("early", "b"), FakeTrial("late", "b")
    for e in range(1, 9):
        report(s, early, "segmenter3", e, 0.9)
    for e in range(1, 8):
        report(s, late, "segmenter3", e, 0.95)
    assert report(s, late, "segmenter3", 8, 0.1) == STOP, "the first stage's end is a rung: B's classifier is saved"
