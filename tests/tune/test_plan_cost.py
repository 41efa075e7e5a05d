"""The plan's cost model: the arithmetic of `trial_seconds` and of a study estimate, against hand-computed values."""

from __future__ import annotations

import pytest

from harness.config import load_run_config
from harness.tune.plan import (
    COST,
    RAY_START_S,
    TRIAL_OVERHEAD_S,
    CostModel,
    StageCost,
    StageWork,
    images_per_epoch,
    plan_study,
    split_counts,
    trial_seconds,
)
from harness.tune.study import StudySpec

A = StageCost(epoch_s=0.5, train_s_per_image=0.01, val_s_per_image=0.004, exponent=2.0)
B = StageCost(epoch_s=0.1, train_s_per_image=0.02, val_s_per_image=0.01, exponent=1.0)


def test_epoch_seconds_scale_per_image_terms_with_resolution():
    # 0.5 + (100 * 0.01 + 50 * 0.004) * (256 / 128) ** 2 = 0.5 + 1.2 * 4
    assert A.epoch_seconds(100, 50, 256) == pytest.approx(5.3)
    assert A.epoch_seconds(100, 50, 128) == pytest.approx(1.7)
    # exponent 0 (a probe measured at the stage's own size): no scaling
    probed = StageCost(epoch_s=0.0, train_s_per_image=0.2, val_s_per_image=0.05, exponent=0.0)
    assert probed.epoch_seconds(10, 4, 320) == pytest.approx(2.2)
    # inference: validation seconds per image, no epoch constant; 30 * 0.004 * (64 / 128) ** 2
    assert A.inference_seconds(30, 64) == pytest.approx(0.03)


def test_trial_seconds_by_hand():
    cost = CostModel(kinds={"a": A, "b": B}, models={}, trial_s=1.0, eval_s_per_image=0.02, fitted="test")
    work = [StageWork(A, epochs=3, n_train=100, n_val=50, image_size=256, n_eval=20),
            StageWork(B, epochs=2, n_train=40, n_val=10, image_size=64, n_eval=12)]
    # training: 3 * 5.3 + 2 * (0.1 + (0.8 + 0.1) * 0.5) = 15.9 + 1.1
    # evaluation: 1.0 + 3 views * (0.004 * 20 * 4 + 0.01 * 12 * 0.5) + 0.02 * 20 = 1.0 + 0.96 + 0.18 + 0.4
    assert trial_seconds(cost, work, n_eval=20, views=3) == pytest.approx(19.54)
    assert trial_seconds(cost, [], n_eval=0, views=1) == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "batch", "steps", "seen"), [
    (100, 16, None, 96),  # the last partial batch is dropped
    (17, 16, None, 16),
    (16, 16, None, 16),
    (10, 16, None, 10),   # a single (partial) batch is kept
    (100, 16, 2, 32),     # max_steps_per_epoch caps it
    (100, 16, 10, 96),
])
def test_images_per_epoch(n, batch, steps, seen):
    assert images_per_epoch(n, batch, steps) == seen


def test_split_counts():
    assert split_counts(300, 0.2, 0.2) == (180, 60, 60)
    assert split_counts(1000, 0.1, 0.0) == (900, 100, 0)


def test_fits_only_the_models_it_was_fitted_on():
    tiny = load_run_config("tiny-a")
    assert COST.fits("classifier", tiny.classifier) and COST.fits("segmenter", tiny.segmenter)
    assert COST.fits("joint", load_run_config("tiny-c").joint)
    paper = load_run_config("paper-a")
    assert not COST.fits("classifier", paper.classifier) and not COST.fits("segmenter", paper.segmenter)
    assert not COST.fits("unknown-kind", tiny.classifier)


def test_study_estimate_by_hand():
    """Pipeline C, 2 trials over 2 learning rates (2 trainings), final seeds 42 (the search's) and 7 (1 training),
    no data dir: 300 images -> 180 train (176 an epoch), 60 val, 60 test; joint at 64 px: scale 1/4."""
    joint = StageCost(epoch_s=0.5, train_s_per_image=0.01, val_s_per_image=0.004, exponent=2.0)
    cost = CostModel(kinds={"joint": joint}, models={"joint": {"encoder": "tu-mobilenetv3_small_050"}}, trial_s=1.0,
                     eval_s_per_image=0.02, fitted="test")
    spec = StudySpec.model_validate({
        "name": "p", "pipelines": ["c"], "base": {"c": "tiny-c"}, "trials": 2, "max_concurrent": 1,
        "search_space": {"params": {"joint.lr": {"type": "categorical", "choices": [0.001, 0.002]}}},
        "overrides": {"joint.image_size": 64, "joint.optim.epochs": 3, "joint.optim.batch_size": 16, "eval.tta": False},
        "final": {"seeds": [42, 7]}, "resources": {"cpu": 1}, "wandb": {"enabled": False}})
    p = plan_study(spec, cost=cost)
    (stage,) = p.stages
    assert (stage.source, stage.train_images, stage.search_trainings, stage.final_trainings) == ("model", 176, 2, 1)
    assert stage.epoch_seconds == pytest.approx(0.5 + (176 * 0.01 + 60 * 0.004) / 4)  # = 1.0
    per_trial = 1.0 + 0.004 * 60 / 4 + 0.02 * 60 + TRIAL_OVERHEAD_S  # fixed + inference + metrics/masks + Ray/Optuna
    assert p.trial_seconds["c"] == pytest.approx(per_trial)
    assert p.search_seconds == pytest.approx(2 * 3 * 1.0 + 2 * per_trial)  # one trial at a time
    final_run = 1.0 + 0.004 * 120 / 4 + 0.02 * 120 + TRIAL_OVERHEAD_S  # evaluates val + test
    assert p.final_seconds == pytest.approx(1 * 3 * 1.0 + 2 * final_run)
    assert p.estimated_seconds == pytest.approx(RAY_START_S + 13.92 + 13.44)
