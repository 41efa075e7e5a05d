"""What `run_trial` leaves in its run directory (issue 12): a run that fails in the directory of an
earlier run leaves that run's files as they were; a run that succeeds replaces all of them (no stale
file of the earlier run); and the same config and seed on CPU give byte-identical metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_run_config
from harness.pipelines.registry import get_pipeline
from harness.pipelines.run import run_trial
from harness.rundir import PARTIAL

TINY = ["classifier.image_size=32", "segmenter.image_size=32", "classifier.optim.epochs=1",
        "segmenter.optim.epochs=1", "runtime.threads=1", "runtime.device=cpu", "roi.lesion_min_pixels=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("outputs") / "ds", n=20, size=40)


def outputs(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run directory except the stage store."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.relative_to(run_dir).parts[0] != "checkpoints"}


class Boom(Exception):
    pass


def fail_in(stage_kind: str):
    def hook(stage: str, record: dict) -> None:
        if stage_kind in stage:
            raise Boom(f"injected failure in {stage}")
    return hook


@pytest.mark.parametrize("where", ["segmenter", "classifier"])
def test_a_failed_run_leaves_the_earlier_runs_files_as_they_were(data, tmp_path, where):
    out = tmp_path / "run"
    first = load_run_config("tiny-a", [*TINY, "data.split=withtest", "data.test_fraction=0.25"])
    run_trial(first, out, data_dir=data, progress=False)
    before = outputs(out)
    assert {"config.yaml", "metrics.json", "metrics_test.json", "predictions.csv", "run.json"} <= set(before)
    second = load_run_config("tiny-b", TINY)
    with pytest.raises(Boom):
        run_trial(second, out, data_dir=data, progress=False, callbacks=[fail_in(where)])
    assert outputs(out) == before, "config, metrics, predictions, masks and stages are the first run's"
    assert not (out / PARTIAL).exists()


def test_a_successful_run_replaces_every_output_of_the_earlier_one(data, tmp_path):
    import yaml

    out = tmp_path / "run"
    run_trial(load_run_config("tiny-a", [*TINY, "data.split=withtest", "data.test_fraction=0.25"]), out,
              data_dir=data, progress=False)
    (out / PARTIAL).mkdir()  # left by a killed run
    (out / PARTIAL / "metrics.json").write_text("{}")
    run_trial(load_run_config("tiny-b", TINY), out, data_dir=data, progress=False)
    assert yaml.safe_load((out / "config.yaml").read_text())["pipeline"] == "b"
    assert not (out / "metrics_test.json").exists(), "the earlier run's test metrics do not linger"
    assert not (out / PARTIAL).exists()
    assert {p.stem for p in (out / "stages").glob("*.json")} == {st.name for st in get_pipeline("b").stages}, \
        "stage records of pipeline b only"


def test_same_config_and_seed_on_cpu_give_identical_metrics(data, tmp_path):
    """tiny-b trained twice from scratch (separate stage stores) at tiny sizes: byte-identical metrics.json
    and predictions.csv."""
    config = load_run_config("tiny-b", [*TINY, "runtime.seed=7", "classifier.optim.epochs=2",
                                        "segmenter.optim.epochs=2"])
    first = run_trial(config, tmp_path / "one", data_dir=data, progress=False)
    second = run_trial(config, tmp_path / "two", data_dir=data, progress=False)
    assert first.trained_stages and second.trained_stages == first.trained_stages, "both runs trained"
    assert (tmp_path / "one" / "metrics.json").read_bytes() == (tmp_path / "two" / "metrics.json").read_bytes()
    assert (tmp_path / "one" / "predictions.csv").read_bytes() == (tmp_path / "two" / "predictions.csv").read_bytes()


def test_a_run_that_fails_before_training_leaves_no_directory(tmp_path):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError):
        run_trial(load_run_config("tiny-a", TINY), tmp_path / "runs" / "r1", data_dir=tmp_path / "missing",
                  progress=False)
    assert not (tmp_path / "runs" / "r1").exists()
