"""`harness run`: a smoke run through the CLI, and one clear line + exit 2 for bad input."""

import json

import pandas as pd
import pytest

from harness.cli import main


def test_run_smoke(make_dataset, tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", n=20, size=40)
    code = main(["-q", "run", "tiny-a", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--set", "classifier.image_size=32", "--set", "segmenter.image_size=32",
                 "--set", "classifier.optim.epochs=1", "--set", "segmenter.optim.epochs=1",
                 "--set", "runtime.threads=1"])
    out = capsys.readouterr().out
    assert code == 0 and "run directory" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["pipeline"] == "a" and 0 <= metrics["balanced_accuracy"] <= 1
    assert (data / "splits" / "default.json").is_file(), "the default split is created and saved"


@pytest.mark.parametrize("argv,expected", [
    (["run", "tiny_a"], 'Did you mean "tiny-a"'),
    (["run", "tiny-a", "--set", "roi.margn=0.3"], 'roi.margn: unknown field'),
    (["run", "tiny-a", "--set", "eval.mask_threshold=2"], "eval.mask_threshold"),
    (["run", "tiny-a", "--data", "/nonexistent/dataset"], "/nonexistent/dataset: no dataset directory"),
    (["run", "missing.yaml"], "missing.yaml: no such config file"),
])
def test_bad_input_exit_2_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.strip().splitlines())


def test_run_refuses_a_broken_dataset(make_dataset, tmp_path, capsys):
    data = make_dataset(tmp_path / "ds", n=12, size=40)
    (data / "masks" / sorted(p.name for p in (data / "masks").iterdir())[0]).write_bytes(b"")
    assert main(["run", "tiny-a", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "0 bytes" in err or "empty" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_missing_default_data_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_DATA", raising=False)
    assert main(["run", "tiny-a"]) == 2
    assert "harness data synth data/synth" in capsys.readouterr().err


def test_every_verb_has_help(capsys):
    for argv in (["run"], ["study"], ["study", "run"], ["study", "status"], ["study", "resume"],
                 ["study", "wandb-sweep"], ["trial"], ["quickstart"], ["report"], ["rerun"]):
        with pytest.raises(SystemExit) as e:
            main(argv + ["--help"])
        assert e.value.code == 0
        assert "usage: harness" in capsys.readouterr().out


def test_a_named_split_is_used_as_written(make_dataset, tmp_path, capsys):
    """`harness data split DIR --seed 3 --name s3` then `harness run tiny-b --data DIR --split s3` (issue 10)."""
    data = make_dataset(tmp_path / "ds", n=20, size=40)
    assert main(["-q", "data", "split", str(data), "--seed", "3", "--name", "s3", "--test", "0.2",
                 "--group-duplicates"]) == 0
    s3 = json.loads((data / "splits" / "s3.json").read_text())
    code = main(["-q", "run", "tiny-b", "--data", str(data), "--split", "s3", "--out", str(tmp_path / "run"),
                 "--set", "classifier.image_size=32", "--set", "segmenter.image_size=32",
                 "--set", "classifier.optim.epochs=1", "--set", "segmenter.optim.epochs=1",
                 "--set", "runtime.threads=1"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((data / "splits" / "s3.json").read_text()) == s3, "the split file is untouched"
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    for subset in ("val", "test"):
        assert sorted(predictions.loc[predictions["subset"] == subset, "image_id"]) == sorted(s3["subsets"][subset])
