"""manifest.json in every run directory, and `harness rerun RUN_DIR` re-making a run from it."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from harness import __version__
from harness.cli import main
from harness.manifest import command_line, git_state, read_manifest
from harness.rerun import compare_metrics, environment_differences
from harness.tune.storage import redact_url as redact

SMALL = ["--set", "classifier.image_size=32", "--set", "segmenter.image_size=32", "--set", "classifier.optim.epochs=1",
         "--set", "segmenter.optim.epochs=1", "--set", "runtime.threads=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_dataset) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("manifest")
    data = make_dataset(root / "ds", n=20, size=40)
    assert main(["-q", "run", "tiny-a", "--data", str(data), "--out", str(root / "run"), *SMALL]) == 0
    return root / "run", data


def test_a_run_records_code_packages_data_split_seeds_and_command(run):
    run_dir, data = run
    m = read_manifest(run_dir)
    assert m["kind"] == "run" and m["harness"]["version"] == __version__
    git = m["harness"]["git"]
    if git_state() is not None:  # tests run from a checkout
        assert len(git["commit"]) == 40 and isinstance(git["dirty"], bool)
    assert m["packages"]["torch"] == metadata.version("torch") and m["packages"]["segmentation_models_pytorch"]
    assert set(m["packages"]) >= {"torch", "timm", "segmentation_models_pytorch", "albumentations", "ray", "optuna",
                                  "wandb", "numpy"}
    assert m["python"]["version"].count(".") == 2 and m["device"]["device"] == "cpu" and m["device"]["threads"] == 1
    assert m["command"] == ["harness", "-q", "run", "tiny-a", "--data", str(data), "--out", str(run_dir), *SMALL]
    assert m["data"]["dir"] == str(data.resolve()) and m["data"]["images"] == 20
    assert len(m["data"]["metadata_hash"]) >= 8 and len(m["data"]["content_hash"]) == 16
    split = json.loads((data / "splits" / "default.json").read_text())
    assert m["split"]["name"] == "default" and m["split"]["sizes"]["val"] == len(split["subsets"]["val"])
    assert m["seeds"] == {"runtime.seed": 42, "data.split_seed": 42} and m["subsets"] == ["val", "test"]


def test_rerun_reproduces_the_metrics(run, tmp_path, capsys):
    run_dir, _ = run
    assert main(["-q", "rerun", str(run_dir), "--out", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    differs = [line for line in out.splitlines() if line.startswith("differs:") and "dirty" not in line]
    assert "metrics match" in out and differs == [], out  # a dirty checkout (while developing) is said, not fatal
    assert read_manifest(tmp_path / "again")["provenance"]["rerun_of"] == str(run_dir.resolve())
    trained = json.loads((tmp_path / "again" / "run.json").read_text())["trained_stages"]
    assert trained, "a rerun trains again; it does not reload the original's stages"


def test_rerun_says_when_metrics_or_data_differ(run, tmp_path, capsys, write_png):
    run_dir, data = run
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["balanced_accuracy"] = metrics["balanced_accuracy"] + 0.25
    (copy / "metrics.json").write_text(json.dumps(metrics))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["data"]["content_hash"] = "0" * 16  # as if an image had been replaced since
    manifest["packages"]["torch"] = "0.0.1"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["-q", "rerun", str(copy), "--reuse-stages", "--out", str(tmp_path / "again")]) == 1
    out = capsys.readouterr().out
    assert "metrics differ: 1 of" in out and "val balanced_accuracy" in out
    assert "differs: data content_hash: 0000000000000000 ->" in out and "differs: package torch: 0.0.1 ->" in out


def test_rerun_without_a_manifest_is_one_clear_line(tmp_path, capsys):
    assert main(["rerun", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json: no manifest there" in err and "Traceback" not in err


def test_compare_metrics_tolerates_nan_and_rounding():
    n, worst, bad = compare_metrics({"a": 0.5, "b": float("nan"), "pipeline": "a", "c": 1},
                                    {"a": 0.5 + 1e-12, "b": float("nan"), "pipeline": "a", "c": 1}, "val",
                                    rtol=1e-6, atol=1e-9)
    assert n == 3 and worst == pytest.approx(1e-12, abs=1e-13) and bad == []
    _, _, bad = compare_metrics({"a": 0.5}, {"a": 0.6, "b": 1.0}, "test", rtol=1e-6, atol=1e-9)
    assert [(m.metric, m.original, m.rerun) for m in bad] == [("a", 0.5, 0.6), ("b", None, 1.0)]
    assert not np.isnan(worst)


def test_environment_differences_and_helpers():
    before = {"harness": {"git": {"commit": "abc", "dirty": False}}, "packages": {"torch": "2.1"},
              "device": {"device": "cuda"}, "split": {"ids_hash": "x"}}
    after = {"harness": {"git": {"commit": "def", "dirty": True}}, "packages": {"torch": "2.2"},
             "device": {"device": "cpu"}, "split": {"ids_hash": "y"}}
    lines = environment_differences(before, after)
    assert lines == ["code: commit abc -> def", "code: uncommitted changes in the checkout (dirty)",
                     "package torch: 2.1 -> 2.2", "device: cuda -> cpu", "split ids_hash: x -> y"]
    assert command_line(["/venv/bin/harness", "run", "x"]) == ["harness", "run", "x"]
    assert command_line(["/src/harness/__main__.py", "run"]) == ["python", "-m", "harness", "run"]
    assert redact("postgresql://me:secret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    assert redact("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
