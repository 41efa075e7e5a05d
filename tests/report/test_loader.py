"""Reading run and study directories."""

from __future__ import annotations

import shutil

import pytest

from harness.errors import ConfigError, DataError
from harness.report.loader import load_run, load_sources


def test_load_run_reads_everything(run_a):
    r = load_run(run_a)
    assert r.pipeline == "a" and r.label == "A" and r.seed == 1 and r.subset == "val"
    assert set(r.stages) == {"classifier3", "segmenter_binary"}
    assert list(r.predictions["image_id"]) == sorted(r.predictions["image_id"])
    assert 0 < r.metrics["balanced_accuracy"] <= 1


def test_auto_subset_uses_test_rows_when_every_run_has_them(fake_root, run_a):
    src = load_sources([fake_root / "a_test", fake_root / "b_test"])
    assert {r.subset for r in src.runs} == {"test"}
    assert len(src.runs[0].predictions) == 20
    mixed = load_sources([fake_root / "a_test", run_a])
    assert {r.subset for r in mixed.runs} == {"val"}
    with pytest.raises(DataError, match="no rows with subset=test"):
        load_sources([run_a], subset="test")


def test_missing_files_name_the_path_and_what_to_do(tmp_path, run_a):
    with pytest.raises(DataError, match="no such directory"):
        load_sources([tmp_path / "nope"])
    broken = tmp_path / "broken"
    shutil.copytree(run_a, broken)
    (broken / "metrics.json").unlink()
    with pytest.raises(DataError, match=r"broken/metrics.json: not found; run `harness run` first"):
        load_run(broken)
    shutil.copytree(run_a, tmp_path / "nocol")
    (tmp_path / "nocol" / "predictions.csv").write_text("image_id,label\nx,0\n")
    with pytest.raises(DataError, match=r"missing column\(s\) pred_label"):
        load_run(tmp_path / "nocol")


def test_study_dir_prefers_final_runs(tmp_path, fake_root):
    study = tmp_path / "study"
    (study / "trials").mkdir(parents=True)
    (study / "study.yaml").write_text("name: s\n")
    shutil.copytree(fake_root / "a_s1", study / "trials" / "t0")
    src = load_sources([study])
    assert src.origin == "trials" and src.study_dir == study and [r.name for r in src.runs] == ["t0"]
    shutil.copytree(fake_root / "b_s2", study / "final" / "best_b")
    src = load_sources([study])
    assert src.origin == "final" and [r.label for r in src.runs] == ["B"]
    with pytest.raises(ConfigError, match="pass it alone"):
        load_sources([study, fake_root / "a_s1"])
