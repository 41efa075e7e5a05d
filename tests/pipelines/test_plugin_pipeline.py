"""A user's own pipeline, registered from this file alone (no edit of the harness), runs through
`harness run`, a two-trial Ray Tune + Optuna study and `harness report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.pipelines.base import Inference, Pipeline
from harness.pipelines.registry import StageSpec, get_pipeline, pipeline_names, register_pipeline
from harness.pipelines.stages import CLASSIFIER, classify, train_stage

TOY_PRESET = {
    "name": "toy-tiny",
    "classifier": {"backbone": "test_resnet", "image_size": 32, "pretrained": False, "head_hidden": 16,
                   "lr_backbone": 2e-3, "lr_head": 2e-3, "optim": {"epochs": 2, "batch_size": 8}},
    "runtime": {"threads": 1},
}


@register_pipeline("toy", label="T", title="classifier only", color="#805ad5",
                   stages=(StageSpec("whole", "classifier", "classifier", 3),), sections=("classifier", "eval"),
                   explain=("whole", "full"), presets={"toy-tiny": TOY_PRESET})
class ClassifierOnly(Pipeline):
    """Task order "no segmentation at all": a 3-class whole-image classifier, empty masks."""

    def train(self, ctx):
        cfg = ctx.config.classifier

        def data():
            tr, va = ctx.subset(cfg.image_size, ctx.split.train), ctx.subset(cfg.image_size, ctx.split.val)
            return (tr[0], tr[2], tr[2]), (va[0], va[2])

        return {"whole": train_stage(ctx, "whole", CLASSIFIER, cfg, 3, data)}

    def infer(self, ctx, stages, ids):
        images, _, _ = ctx.subset(ctx.config.classifier.image_size, ids)
        probs = classify(ctx, stages["whole"], images, ctx.config.eval)
        return Inference(list(ids), probs, probs.argmax(1), [np.zeros(s, bool) for s in ctx.original_shapes(ids)])


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("toy") / "ds", n=24, size=40, images_per_patient=2)


def test_the_toy_is_registered_next_to_the_builtins():
    assert pipeline_names()[:3] == ["a", "b", "c"] and "toy" in pipeline_names()
    spec = get_pipeline("toy")
    assert spec.label == "T" and spec.base_preset == "toy-tiny" and [s.name for s in spec.stages] == ["whole"]


def test_harness_run_and_report_with_the_toy_and_a(data, tmp_path, capsys):
    assert main(["run", "toy-tiny", "--data", str(data), "--out", str(tmp_path / "toy")]) == 0
    assert json.loads((tmp_path / "toy" / "stages" / "whole.json").read_text())["epochs"] == 2
    pred = pd.read_csv(tmp_path / "toy" / "predictions.csv")
    assert (pred.pred_pixels == 0).all()
    tiny_a = ["--set", "classifier.image_size=32", "--set", "segmenter.image_size=32", "--set",
              "classifier.optim.epochs=1", "--set", "segmenter.optim.epochs=1", "--set", "runtime.threads=1"]
    assert main(["run", "tiny-a", "--data", str(data), "--out", str(tmp_path / "a"), *tiny_a]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "toy"), "--out", str(tmp_path / "report"),
                 "--bootstrap", "50"]) == 0
    table = pd.read_csv(tmp_path / "report" / "table9.csv")
    assert {"A", "T", "A_ci_low", "T_ci_low"} <= set(table.columns)
    html = (tmp_path / "report" / "index.html").read_text()
    assert "pipeline A vs pipeline T" in html and "gradcam_T.png" in html


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_two_trial_study_of_the_toy(data, tmp_path, capsys):
    study = tmp_path / "toy_study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "toy_study", "pipelines": ["toy"], "plugins": [str(Path(__file__).resolve())], "trials": 2,
        "sampler": "random", "scheduler": {"type": "fifo"}, "resources": {"cpu": 1}, "final": {"seeds": [1]},
        "wandb": {"enabled": False}, "data": {"val_fraction": 0.25, "test_fraction": 0.25},
        "search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, False],
                                                 "when": {"pipeline": ["toy"]}}}}}))
    import ray

    ray.shutdown()
    try:
        code = main(["study", "run", str(study), "--data", str(data), "--out", str(tmp_path / "out")])
    finally:
        ray.shutdown()
    assert code == 0
    out = capsys.readouterr().out
    assert "best toy" in out
    assert (tmp_path / "out" / "final" / "toy-seed1" / "metrics_test.json").is_file()
    assert "T" in pd.read_csv(tmp_path / "out" / "report" / "table9.csv").columns
