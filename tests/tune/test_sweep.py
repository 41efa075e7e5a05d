"""The same search as a native W&B sweep: the sweep YAML, and `harness trial` as the agent runs it."""

import json

import yaml

from harness.cli import main
from harness.tune.tracking import read_offline_run

STUDY = """
name: sweepy
pipelines: [a, b]
base: {a: tiny-a, b: tiny-b}
overrides: {classifier.image_size: 32, segmenter.image_size: 32, classifier.optim.epochs: 1, segmenter.optim.epochs: 1,
            runtime.threads: 1}
search_space:
  params:
    eval.tta: {type: categorical, choices: [true, false]}
    roi.margin: {type: float, low: 0.0, high: 0.4, step: 0.2, when: {pipeline: [b]}}
  simplex:
    - fields: [segmenter.loss.dice, segmenter.loss.focal, segmenter.loss.lovasz]
trials: 4
wandb: {enabled: true, mode: offline}
"""


def test_wandb_sweep_yaml(tmp_path, capsys):
    study = tmp_path / "sweepy.yaml"
    study.write_text(STUDY)
    out = tmp_path / "sweep.yaml"
    assert main(["study", "wandb-sweep", str(study), "--out", str(out)]) == 0
    sweep = yaml.safe_load(out.read_text())
    assert sweep["method"] == "bayes" and sweep["metric"] == {"name": "balanced_accuracy", "goal": "maximize"}
    assert sweep["command"][:5] == ["${env}", "harness", "trial", "--study", str(study)]
    assert sweep["parameters"]["roi.margin"] == {"values": [0.0, 0.2, 0.4]}
    assert "simplex.segmenter.loss.dice" in sweep["parameters"] and sweep["run_cap"] == 4


def test_trial_as_the_agent_runs_it(make_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = make_dataset(tmp_path / "ds", n=20, size=40)
    study = tmp_path / "sweepy.yaml"
    study.write_text(STUDY)
    run_dir = tmp_path / "trials" / "t1"
    args = ["pipeline=b", "eval.tta=false", "roi.margin=0.2", "simplex.segmenter.loss.dice=0.5",
            "simplex.segmenter.loss.focal=0.5", "simplex.segmenter.loss.lovasz=0.5"]
    assert main(["-q", "trial", "--study", str(study), "--data", str(data), "--out", str(run_dir)] + args) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["pipeline"] == "b" and config["eval"]["tta"] is False and config["roi"]["margin"] == 0.2
    loss = config["segmenter"]["loss"]
    assert abs(loss["dice"] - 1 / 3) < 1e-4 and abs(sum(loss.values()) - 1) < 1e-4, "raw draws normalised"
    (run,) = list((run_dir / "wandb").glob("offline-run-*"))
    rec = read_offline_run(run)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert rec["config"]["roi.margin"] == 0.2
    assert rec["summary"]["balanced_accuracy"] == metrics["balanced_accuracy"]
