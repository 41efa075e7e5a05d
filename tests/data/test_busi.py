"""harness.data.busi: BUSI folders -> paper format that passes check, with extra masks OR-merged."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from harness.data.busi import import_busi
from harness.data.check import check_dataset, load_index
from harness.data.io import read_mask
from harness.errors import DataError
from harness.testing.datasets import box_mask


@pytest.fixture
def busi(tmp_path, make_busi):
    """6 images (2 per class, RGB), one image with two extra masks, empty Normal masks."""
    return make_busi(tmp_path / "Dataset_BUSI_with_GT")


def test_import_gives_a_valid_paper_dataset(busi, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = import_busi(busi, tmp_path / "out")
    assert summary.classes == {"Benign": 2, "Malignant": 2, "Normal": 2} and summary.extra_masks_merged == 2
    assert "imported 6 images" in summary.format()
    assert "no patient ids" in caplog.text and "--group-duplicates" in caplog.text
    report = check_dataset(tmp_path / "out")
    assert report.ok, report.errors
    index = load_index(tmp_path / "out")
    assert index.ids() == ["benign_001", "benign_002", "malignant_001", "malignant_002", "normal_001", "normal_002"]
    assert list(index.labels()) == [0, 0, 1, 1, 2, 2]
    assert index.patients() == index.ids()
    merged = read_mask(tmp_path / "out" / "masks" / "benign_002_mask.png")
    expected = (box_mask(42, 50, 5, 5) | box_mask(42, 50, 20, 30) | box_mask(42, 50, 30, 10)) > 0
    assert np.array_equal(merged, expected)
    original = (busi / "benign" / "benign (1).png").read_bytes()
    assert (tmp_path / "out" / "images" / "benign_001.png").read_bytes() == original
    assert not list(tmp_path.glob(".out.partial*"))


def test_missing_folder_is_named(busi, tmp_path):
    import shutil

    shutil.rmtree(busi / "normal")
    with pytest.raises(DataError, match=r"normal/: folder missing"):
        import_busi(busi, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_image_without_mask_is_named(busi, tmp_path):
    (busi / "malignant" / "malignant (2)_mask.png").unlink()
    with pytest.raises(DataError, match=r"malignant \(2\)\.png: no mask \(expected malignant \(2\)_mask\.png\)"):
        import_busi(busi, tmp_path / "out")


def test_mask_of_another_size_and_broken_png_are_named(busi, tmp_path, write_png):
    write_png(busi / "benign" / "benign (1)_mask.png", np.zeros((10, 10), np.uint8))
    (busi / "normal" / "normal (1).png").write_bytes(b"nope")
    with pytest.raises(DataError) as err:
        import_busi(busi, tmp_path / "out")
    text = "\n".join(err.value.problems)
    assert "benign (1)_mask.png: size 10x10 differs from its image benign (1).png (50x41)" in text
    assert "normal (1).png: not a PNG file" in text


def test_output_must_be_new_or_empty(busi, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="already exists and is not empty"):
        import_busi(busi, tmp_path / "out")


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        import_busi(tmp_path / "nope", tmp_path / "out")


def test_source_one_level_up_is_found(busi, tmp_path):
    summary = import_busi(busi.parent, tmp_path / "out")
    assert summary.images == 6
