"""`harness study plan`: trials, trainings vs cache hits, per-epoch cost, estimated wall time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.tune.plan import plan_study
from harness.tune.study import StudySpec

ROOT = Path(__file__).resolve().parents[2]


def spec(**fields) -> StudySpec:
    raw = {"name": "p", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "trials": 6,
           "search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]},
                                       "classifier.augment.vflip": {"type": "categorical", "choices": [True, False]}}},
           "overrides": {"classifier.image_size": 32, "segmenter.image_size": 32, "classifier.optim.batch_size": 4,
                         "segmenter.optim.batch_size": 4},
           "final": {"seeds": [42, 7]}, "resources": {"cpu": 1}, "wandb": {"enabled": False}}
    raw.update(fields)
    return StudySpec.model_validate(raw)


def test_trainings_follow_the_parameters_that_reach_a_stage():
    p = plan_study(spec())
    by = {(s.pipeline, s.stage): s for s in p.stages}
    assert p.trials == {"a": 3, "b": 3} and p.final_runs == 4
    # vflip reaches the classifier sections (2 values); TTA is evaluation-only: segmenters train once
    assert by[("a", "classifier3")].search_trainings == 2 and by[("a", "classifier3")].search_cache_hits == 1
    assert by[("a", "segmenter_binary")].search_trainings == 1
    assert by[("b", "segmenter3")].search_trainings == 1 and by[("b", "roi_classifier")].search_trainings == 2
    assert all(s.final_trainings == 1 for s in p.stages)  # seed 42 is the search's; seed 7 trains once
    # the tiny presets' models are the cost model's own: no probe
    assert all(s.source == "model" and s.epoch_seconds > 0 for s in p.stages)
    assert p.estimated_seconds == pytest.approx(3.0 + p.search_seconds + p.final_seconds)


def test_a_model_the_cost_model_was_not_fitted_on_is_probed():
    p = plan_study(spec(overrides={"classifier.backbone": "test_efficientnet", "classifier.image_size": 32,
                                   "segmenter.image_size": 32, "classifier.optim.batch_size": 4,
                                   "segmenter.optim.batch_size": 4}))
    by = {s.stage: s for s in p.stages}
    assert by["classifier3"].source == by["roi_classifier"].source == "probe"
    assert by["segmenter_binary"].source == by["segmenter3"].source == "model"
    assert by["classifier3"].epoch_seconds > 0


def test_calibration_from_an_earlier_studys_stage_records(tmp_path):
    rec = {"stage": "segmenter3", "history": [{"epoch": e, "seconds": 2.0} for e in range(1, 6)]}
    (tmp_path / "stage_cache" / "segmenter3-x").mkdir(parents=True)
    (tmp_path / "stage_cache" / "segmenter3-x" / "stage.json").write_text(json.dumps(rec))
    p = plan_study(spec(), calibrate=tmp_path)
    seg = next(s for s in p.stages if s.stage == "segmenter3")
    assert (seg.source, seg.epochs) == ("records", 5) and seg.epoch_seconds == pytest.approx(2.0)


def test_plan_cli_json(capsys):
    assert main(["study", "plan", str(ROOT / "studies" / "ablation_quick.yaml"), "--json",
                 "--set", "overrides.classifier.image_size=32", "--set", "overrides.segmenter.image_size=32"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["estimated_seconds"] > 0 and data["final_runs"] == 6 and data["trials"] == {"b": 3}
