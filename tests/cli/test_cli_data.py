"""`harness data ...` end to end through harness.cli.main: exit codes, stdout summaries, stderr lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main
from harness.errors import DataError


def run(capsys, *argv):
    code = main(["data", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize("verb", ["check", "synth", "import-busi", "split"])
def test_every_verb_has_help(capsys, verb):
    with pytest.raises(SystemExit) as e:
        main(["data", verb, "--help"])
    assert e.value.code == 0 and "usage: harness data" in capsys.readouterr().out


def test_data_without_verb_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "check" in out and "import-busi" in out


def test_check_good_dataset(capsys, dataset):
    code, out, err = run(capsys, "check", dataset)
    assert code == 0 and "images: 12 (Benign 4, Malignant 4, Normal 4)" in out and "Validation" in out
    assert "error" not in err


def test_check_prints_warnings(capsys, make_dataset, tmp_path):
    code, _, err = run(capsys, "check", make_dataset(tmp_path / "ds", n=6, patient_ids=False))
    assert code == 0 and err.startswith("warning: training_metadata.xlsx: no patient_id column")


def test_check_bad_dataset_lists_every_problem(capsys, dataset, write_png):
    (dataset / "images" / "b001.png").unlink()
    write_png(dataset / "masks" / "m002_mask.png", np.zeros((10, 12), np.uint8) + 255)
    code, out, err = run(capsys, "check", dataset)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "error: images/b001.png: no such file (row 3, image b001)" in err
    assert "error: masks/m002_mask.png: size 12x10 differs from its image images/m002.png (48x48)" in err


def test_check_missing_directory_and_metadata(capsys, tmp_path):
    assert run(capsys, "check", tmp_path / "nope")[0] == 2
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "check", tmp_path / "empty")
    assert code == 2 and "error: training_metadata.xlsx: not found" in err


def test_check_renamed_columns(capsys, make_dataset, tmp_path):
    root = make_dataset(tmp_path / "ds", n=6, columns={"label": "diagnosis", "patient_id": "case"})
    code, _, err = run(capsys, "check", root)
    assert code == 2 and 'required column "label" is missing' in err and "--columns label=<column>" in err
    assert run(capsys, "check", root, "--columns", "label=diagnosis,patient_id=case")[0] == 0
    code, _, err = run(capsys, "check", root, "--columns", "label")
    assert code == 2 and "error: --columns label: expected name=column pairs" in err


def test_debug_shows_the_exception(dataset):
    (dataset / "images" / "b001.png").unlink()
    with pytest.raises(DataError):
        main(["--debug", "data", "check", str(dataset)])


def test_split_writes_and_prints_table_1(capsys, dataset):
    code, out, _ = run(capsys, "split", dataset)
    path = dataset / "splits" / "default.json"
    assert code == 0 and f"wrote {path}" in out
    assert "Train" in out and "Validation" in out and "Normal" in out and "Total" in out
    data = json.loads(path.read_text())
    assert data["seed"] == 42 and data["val"] == 0.2
    assert sum(len(v) for v in data["subsets"].values()) == 12


def test_split_rerun_same_is_fine_but_different_needs_force(capsys, make_dataset, tmp_path):
    root = make_dataset(tmp_path / "ds", n=40, images_per_patient=1)
    assert run(capsys, "split", root, "--seed", "1")[0] == 0
    assert run(capsys, "split", root, "--seed", "1")[0] == 0
    code, _, err = run(capsys, "split", root, "--seed", "2")
    assert code == 2 and "already exists with other subsets" in err and "--force" in err
    assert run(capsys, "split", root, "--seed", "2", "--force")[0] == 0
    assert run(capsys, "split", root, "--seed", "2", "--name", "other", "--test", "0.2", "--group-duplicates")[0] == 0
    assert (root / "splits" / "other.json").exists()


def test_split_replaces_a_stale_split(capsys, dataset, edit_metadata):
    assert run(capsys, "split", dataset)[0] == 0
    edit_metadata(dataset, lambda t: t.assign(label_name=t["label_name"].str.upper()))
    assert run(capsys, "split", dataset)[0] == 0


def test_split_refuses_a_bad_dataset_or_fractions(capsys, dataset):
    code, _, err = run(capsys, "split", dataset, "--val", "1.5")
    assert code == 2 and "error: val must be in (0, 1)" in err
    (dataset / "masks" / "b000_mask.png").write_bytes(b"")
    code, _, err = run(capsys, "split", dataset)
    assert code == 2 and "error: masks/b000_mask.png: empty file (0 bytes)" in err
    assert not (dataset / "splits").exists()


def test_import_busi_then_check_and_split(capsys, make_busi, tmp_path):
    src = make_busi(tmp_path / "busi", per_class=3)
    code, out, _ = run(capsys, "import-busi", src, tmp_path / "out")
    assert code == 0 and "imported 9 images" in out and "--group-duplicates" in out
    assert run(capsys, "check", tmp_path / "out")[0] == 0
    assert run(capsys, "split", tmp_path / "out", "--group-duplicates")[0] == 0
    (src / "normal" / "normal (1)_mask.png").unlink()
    code, _, err = run(capsys, "import-busi", src, tmp_path / "out2")
    assert code == 2 and "normal (1).png: no mask" in err


def test_synth_then_check(capsys, tmp_path):
    pytest.importorskip("harness.data.synth")
    code, out, _ = run(capsys, "synth", tmp_path / "syn", "--images", "12", "--size", "64", "--seed", "3")
    assert code == 0 and "wrote 12 images" in out and "images/s" in out
    code, out, _ = run(capsys, "check", tmp_path / "syn")
    assert code == 0 and "images: 12" in out
