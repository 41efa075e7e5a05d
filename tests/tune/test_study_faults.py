"""Studies on Ray under faults (issue 12): every trial failing is an error naming the pipeline and the
reason, resources no node has are refused up front, a password in --storage never reaches a file, and
Ctrl-C stops the study cleanly, says how to resume it and the resume finishes it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.tune.study import StudySpec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

FAST = {"classifier.image_size": 32, "segmenter.image_size": 32, "classifier.optim.epochs": 2,
        "segmenter.optim.epochs": 2, "classifier.optim.batch_size": 8, "segmenter.optim.batch_size": 8,
        "roi.lesion_min_pixels": 2, "eval.batch_size": 32}


def spec_raw(**fields) -> dict:
    raw = {"name": "faults", "pipelines": ["a"], "base": {"a": "tiny-a"}, "overrides": FAST,
           "search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]}}},
           "trials": 2, "scheduler": {"type": "fifo"}, "resources": {"cpu": 1}, "max_failures": 0,
           "final": {"seeds": [1]}, "wandb": {"enabled": False},
           "data": {"split": "study", "val_fraction": 0.25, "test_fraction": 0.25}}
    raw.update(fields)
    return raw


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("faults") / "ds", n=24, size=40, images_per_patient=2)


def test_every_trial_failing_names_the_pipeline_and_the_reason_and_no_password_is_stored(data, tmp_path):
    import ray

    from harness.tune.runner import failed_pipelines, run_study
    from harness.tune.testing import FailEvery

    ray.shutdown()
    out = tmp_path / "study"
    url = f"sqlite:///file:{tmp_path / 'optuna.db'}?uri=true&password=hunter2"
    summary = run_study(StudySpec.model_validate(spec_raw()), out, data_dir=data, storage_url=url,
                        ray_init={"num_cpus": 2, "log_to_driver": False}, epoch_hooks=[FailEvery("disk on fire")])
    ray.shutdown()
    assert summary["best"] == {} and summary["final"] == []
    assert summary["states"] == {"a": {"FAIL": 2}}
    assert "disk on fire" in summary["errors"]["a"]
    (line,) = failed_pipelines(summary, ["a"])
    assert line.startswith("pipeline a: no complete trial (2 FAIL); first error: ") and "disk on fire" in line
    assert "hunter2" not in summary["storage"] and "password=***" in summary["storage"]
    leaked = [p for p in out.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()]
    assert not leaked, f"the password reached {leaked}"
    assert list(out.glob("ray/study-*/tuner.pkl")) and list(out.glob("ray/study-*/searcher-state-*.pkl")), \
        "the pickles Ray writes were checked"


def test_resources_no_node_has_are_refused_up_front(ray_cpus):
    from harness.tune.runner import check_resources

    check_resources(StudySpec.model_validate(spec_raw(resources={"cpu": 2})), cuda=False)
    with pytest.raises(ConfigError, match=r"each trial needs 3 CPU and 0 GPU, but no node .* has 2 CPU, 0 GPU"):
        check_resources(StudySpec.model_validate(spec_raw(resources={"cpu": 3})), cuda=False)
    with pytest.raises(ConfigError, match="needs 1 CPU and 1 GPU"):
        check_resources(StudySpec.model_validate(spec_raw(resources={"cpu": 1, "gpu": 1})), cuda=False)


def _interrupt_when_a_trial_runs(study_dir: Path, stop: threading.Event) -> None:
    """Send SIGINT to this process once a trial has written its trial.json and trained a moment."""
    while not stop.is_set():
        if list(study_dir.glob("trials/*/trial.json")):
            time.sleep(0.5)  # a trial of this study trains for several seconds (20 epochs): still running then
            os.kill(os.getpid(), signal.SIGINT)
            return
        time.sleep(0.2)


def test_ctrl_c_stops_cleanly_and_the_study_resumes(data, tmp_path, capsys):
    import ray

    ray.shutdown()
    out = tmp_path / "study"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec_raw(
        overrides={**FAST, "classifier.optim.epochs": 20, "segmenter.optim.epochs": 20})))
    stop = threading.Event()
    watcher = threading.Thread(target=_interrupt_when_a_trial_runs, args=(out, stop), daemon=True)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # xdist workers ignore SIGINT
    watcher.start()
    try:
        code = main(["-q", "study", "run", str(tmp_path / "s.yaml"), "--out", str(out), "--data", str(data),
                     "--no-report"])
    finally:
        stop.set()
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert code == 130, err
    assert f"continue it with `harness study resume {out}`" in err and "Traceback" not in err
    assert not ray.is_initialized(), "the study's Ray (and its trials) stopped"
    study = optuna.load_study(study_name="faults:a", storage=f"sqlite:///{out / 'optuna.db'}")
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states and "WAITING" in states, "interrupted trials are queued again"
    assert not list(out.glob("final/*/metrics.json")), "no final run started from a partial search"

    assert main(["-q", "study", "resume", str(out), "--no-report"]) == 0, capsys.readouterr().err
    ray.shutdown()
    study = optuna.load_study(study_name="faults:a", storage=f"sqlite:///{out / 'optuna.db'}")
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2
    assert list(out.glob("final/*/metrics_test.json")), "the resumed study ran its final run"
