"""The same search as a native W&B sweep: the sweep YAML, `harness trial` as the agent runs it, and
when W&B runs are online. W&B data is read back from the JSON record the harness writes
(``RUN_DIR/wandb.json``), never by parsing W&B's private ``.wandb`` format."""

import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.tune.study import StudySpec, load_study
from harness.tune.sweep import agent_run_dir, wandb_sweep
from harness.tune.tracking import has_wandb_credentials, read_record, stable_run_id, wandb_mode

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
objectives: [{metric: balanced_accuracy}, {metric: dice_mean}]
trials: 4
scheduler: {type: asha, grace_period: 2, reduction_factor: 3}
wandb: {enabled: true, mode: offline, project: sweepy-project, entity: my-team}
"""


@pytest.fixture
def study(tmp_path) -> Path:
    path = tmp_path / "sweepy.yaml"
    path.write_text(STUDY)
    return path


def test_wandb_sweep_yaml(study, tmp_path, capsys):
    out = tmp_path / "sweep.yaml"
    data = tmp_path / "my-data"
    assert main(["study", "wandb-sweep", str(study), "--data", str(data), "--out", str(out)]) == 0
    sweep = yaml.safe_load(out.read_text())
    assert sweep["project"] == "sweepy-project" and sweep["entity"] == "my-team", "W&B ignores init(project=)"
    assert sweep["method"] == "bayes" and sweep["metric"] == {"name": "balanced_accuracy", "goal": "maximize"}
    assert "dice_mean (maximize, logged)" in sweep["description"]
    assert sweep["command"] == ["${env}", "harness", "trial", "--study", str(study.resolve()), "--data",
                                str(data.resolve()), "${args_no_hyphens}"]
    assert sweep["parameters"]["roi.margin"] == {"values": [0.0, 0.2, 0.4]}
    assert "simplex.segmenter.loss.dice" in sweep["parameters"] and sweep["run_cap"] == 4
    assert "early_terminate" not in sweep, "hyperband would compare different stages of different pipelines"


def test_one_pipeline_sweep_maps_asha_to_hyperband(study):
    spec = load_study(study)
    assert "early_terminate" not in wandb_sweep(spec, study, pipeline="a"), "two objectives: Tune runs FIFO too"
    spec = spec.model_copy(update={"objectives": spec.objectives[:1]})
    sweep = wandb_sweep(spec, study, pipeline="a")
    assert sweep["name"] == "sweepy:a" and sweep["run_cap"] == 2, "the pipeline's own budget"
    assert sweep["early_terminate"] == {"type": "hyperband", "min_iter": 2, "eta": 3}
    assert sweep["parameters"]["pipeline"] == {"value": "a"}
    assert "roi.margin" not in sweep["parameters"], "B-only parameters are not in A's sweep"
    assert "--epoch-objective" in sweep["command"], "runs log the per-epoch proxy hyperband reads"
    assert "--data" not in sweep["command"]
    fifo = spec.model_copy(update={"scheduler": spec.scheduler.model_copy(update={"type": "fifo"})})
    assert "early_terminate" not in wandb_sweep(fifo, study, pipeline="a")


def test_grid_sweep_has_only_grid_valid_parameters(tmp_path):
    spec = StudySpec.model_validate({
        "name": "g", "pipelines": ["b"], "base": {"b": "tiny-b"}, "sampler": "grid",
        "search_space": {"params": {"roi.lesion_min_pixels": {"type": "int", "low": 0, "high": 3},
                                    "eval.tta": {"type": "categorical", "choices": [True, False]}}}})
    sweep = wandb_sweep(spec, "g")
    assert sweep["method"] == "grid" and sweep["run_cap"] == 8
    assert sweep["parameters"]["roi.lesion_min_pixels"] == {"values": [0, 1, 2, 3]}, "grid rejects int_uniform"
    assert all("values" in p or "value" in p for p in sweep["parameters"].values())


def test_parallel_agents_never_share_a_run_directory(monkeypatch):
    spec = load_study("quickstart")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    dirs = {agent_run_dir(spec) for _ in range(20)}
    assert len(dirs) == 20, "same second, different directories"
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    assert agent_run_dir(spec) == Path("runs/sweeps/quickstart/abc123"), "under an agent: the W&B run id"


def _netrc(home: Path, machine: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".netrc").write_text(f"machine {machine}\n  login user\n  password {'k' * 40}\n")
    (home / ".netrc").chmod(0o600)


def test_runs_are_online_whenever_the_user_is_logged_in(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert not has_wandb_credentials(env) and wandb_mode(None, env) == "offline", "no credentials: offline"
    assert wandb_mode(None, {**env, "WANDB_API_KEY": "x" * 40}) == "online"
    _netrc(home, "api.wandb.ai")  # what `wandb login` writes
    assert has_wandb_credentials(env) and wandb_mode(None, env) == "online", "logged in through ~/.netrc"
    assert wandb_mode(None, {**env, "WANDB_BASE_URL": "https://wandb.example.org"}) == "offline", "another host"
    other = tmp_path / "other"
    _netrc(other, "wandb.example.org")
    assert wandb_mode(None, {"HOME": str(home), "NETRC": str(other / ".netrc"),
                             "WANDB_BASE_URL": "https://wandb.example.org"}) == "online", "$NETRC, own server"
    assert wandb_mode(None, {**env, "WANDB_MODE": "offline"}) is None, "WANDB_MODE: W&B decides"
    assert wandb_mode("disabled", env) == "disabled", "the study's own mode wins"


def test_trial_as_the_agent_runs_it(make_dataset, tmp_path, monkeypatch, study):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    data = make_dataset(tmp_path / "ds", n=20, size=40)
    run_dir = tmp_path / "trials" / "t1"
    args = ["pipeline=b", "eval.tta=false", "roi.margin=0.2", "simplex.segmenter.loss.dice=0.5",
            "simplex.segmenter.loss.focal=0.5", "simplex.segmenter.loss.lovasz=0.5"]
    assert main(["-q", "trial", "--study", str(study), "--data", str(data), "--out", str(run_dir),
                 "--epoch-objective"] + args) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["pipeline"] == "b" and config["eval"]["tta"] is False and config["roi"]["margin"] == 0.2
    loss = config["segmenter"]["loss"]
    assert abs(loss["dice"] - 1 / 3) < 1e-4 and abs(sum(loss.values()) - 1) < 1e-4, "raw draws normalised"
    record = read_record(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert record["state"] == "finished" and record["offline"] is True
    assert Path(record["run_dir"]).is_dir() and Path(record["run_dir"]).name.startswith("offline-run-")
    assert record["id"] == stable_run_id("sweepy", run_dir.resolve()), "the same --out continues the same run"
    assert record["job_type"] == "agent" and record["tags"] == ["study:sweepy", "pipeline:b"]
    assert record["project"] == "sweepy-project" and record["group"] == "sweepy"
    assert record["config"]["roi.margin"] == 0.2 and record["config"]["pipeline"] == "b"
    assert record["summary"]["dice_mean"] == metrics["dice_mean"]
    assert record["define_metric"] == {"balanced_accuracy": "last", "dice_mean": "max"}
    per_epoch = [row["balanced_accuracy"] for row in record["history"][:-1] if "balanced_accuracy" in row]
    assert per_epoch, "the stage-aligned proxy every epoch (what hyperband compares)"
    assert record["history"][-1] == {"balanced_accuracy": metrics["balanced_accuracy"],
                                     "dice_mean": metrics["dice_mean"]}, "the final objective is the last value"


def test_epoch_objective_positions_are_stage_aligned(monkeypatch, tmp_path):
    """A stage stopped early repeats its last value, so the n-th value is the same stage and epoch in
    every run: what W&B's hyperband compares (it indexes the metric's history by position)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    from harness.tune.tracking import TrialTracker

    tracker = TrialTracker(enabled=True, project="p", group="g", name="n", config={}, directory=tmp_path,
                           objectives=[("balanced_accuracy", "max")], epoch_objective="balanced_accuracy",
                           record=tmp_path / "wandb.json")
    for stage, epoch, t, value in (("seg", 1, 1, 0.2), ("seg", 2, 2, 0.4), ("cls", 1, 4, 0.6), ("cls", 2, 5, 0.7)):
        tracker.log_epoch(stage, {"epoch": epoch, "val_metric": value}, proxy=value, position=t)  # seg planned 3
    tracker.finish({"balanced_accuracy": 0.65})
    values = [row["balanced_accuracy"] for row in read_record(tmp_path)["history"] if "balanced_accuracy" in row]
    assert values == [0.2, 0.4, 0.4, 0.6, 0.7, 0.65]


class FakeWandb:
    """Records what publish_report asks of W&B (no server)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.Settings = lambda **k: k
        fake = self

        class Artifact:
            def __init__(self, name, type, description=""):
                self.name, self.type, self.files = name, type, []

            def add_file(self, path):
                self.files.append(Path(path).name)

        class Run:
            def log_artifact(self, artifact):
                fake.calls.append(("log_artifact", artifact.name, artifact.type, sorted(artifact.files)))

            def finish(self):
                fake.calls.append(("finish",))

        self.Artifact = Artifact
        self._run = Run

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        return self._run()


def test_the_report_is_an_artifact_only_when_online(tmp_path, monkeypatch):
    import sys

    from harness.tune.tracking import publish_report

    report = tmp_path / "report"
    report.mkdir()
    for name in ("index.html", "table9.csv", "table9.md"):
        (report / name).write_text("x")
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    kwargs = {"project": "p", "entity": None, "group": "quickstart", "mode": None, "run_id": "r1",
              "report_dir": report, "directory": tmp_path / "wandb"}
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert publish_report(**kwargs) is None and fake.calls == [], "offline: nothing copied into W&B's directory"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # logged in
    assert publish_report(**kwargs) == "quickstart-report"
    init = fake.calls[0][1]
    assert init["job_type"] == "report" and init["group"] == "quickstart" and init["id"] == "r1"
    assert init["resume"] == "allow" and init["mode"] == "online"
    assert fake.calls[1] == ("log_artifact", "quickstart-report", "report", ["index.html", "table9.csv", "table9.md"])
