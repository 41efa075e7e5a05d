"""harness.data.check: one test per defect, each asserting the culprit is named; all reported together."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from harness.data import io
from harness.data.check import CheckReport, check_dataset

META = "training_metadata.xlsx"


def _errors(root, columns=None) -> str:
    report = check_dataset(root, columns, preview=False)
    assert not report.ok
    return "\n".join(report.errors)


def _set(edit_metadata, root, row: int, column: str, value):
    """Set one cell; ``row`` is the Excel row number (header = 1)."""

    def fn(t):
        t[column] = t[column].astype(object)
        t.loc[row - 2, column] = value
        return t

    edit_metadata(root, fn)


# --- good datasets -----------------------------------------------------------------------------


def test_valid_dataset_is_ok_with_a_summary(dataset):
    report = check_dataset(dataset)
    assert isinstance(report, CheckReport) and report.ok and report.errors == [] and report.warnings == []
    s = report.summary
    assert s["images"] == 12 and s["classes"] == {"Benign": 4, "Malignant": 4, "Normal": 4}
    assert s["patients"] == {"count": 6, "max_images": 2, "from_column": True}
    assert s["image_size"]["width"] == [48, 48, 48] and s["formats"] == {"gray8": 12}
    assert 0 < s["lesion_area_pct"][50] < 100 and list(s["lesion_area_pct"]) == [5, 25, 50, 75, 95]
    table = s["split_preview"]["table"]
    assert list(table) == ["Train", "Validation"] and list(table["Train"]) == ["Normal", "Benign", "Malignant"]
    assert sum(sum(col.values()) for col in table.values()) == 12
    text = report.format_summary()
    pieces = ("images: 12 (Benign 4, Malignant 4, Normal 4)", "patients: 6", "lesion area", "Validation", "0 error(s)")
    for piece in pieces:
        assert piece in text


def test_mixed_formats_sizes_and_renamed_columns_pass(make_dataset, tmp_path):
    rename = {"label": "diagnosis", "patient_id": "case", "mask_path": "segmentation"}
    root = make_dataset(
        tmp_path / "mixed", n=12, size=[(64, 48), (50, 70), (33, 33)], modes=("RGB", "RGBA", "I;16", "L"),
        columns=rename, label_style="name",
    )
    report = check_dataset(root, rename)
    assert report.ok, report.errors
    assert report.summary["formats"] == {"RGB8": 3, "RGBA8": 3, "gray16": 3, "gray8": 3}
    assert report.summary["image_size"]["distinct"] == 3


def test_missing_patient_column_is_a_warning(make_dataset, tmp_path):
    report = check_dataset(make_dataset(tmp_path / "np", n=6, patient_ids=False))
    assert report.ok and any("patient-wise split cannot be guaranteed" in w for w in report.warnings)
    assert "no patient_id column" in report.format_summary()


def test_unlisted_images_are_a_warning(dataset, write_png):
    write_png(dataset / "images" / "stray.png", np.zeros((8, 8), np.uint8))
    report = check_dataset(dataset, preview=False)
    assert report.ok and any("images/stray.png" in w for w in report.warnings)


def test_path_spellings_are_normalised(dataset, edit_metadata):
    _set(edit_metadata, dataset, 2, "image_path", "./images\\b000.png")
    report = check_dataset(dataset, preview=False)
    assert report.ok and report.warnings == [] and report.index.records[0].image_path == "images/b000.png"


def test_rows_with_errors_do_not_count_as_unlisted(dataset, edit_metadata):
    _set(edit_metadata, dataset, 5, "label", 9)
    report = check_dataset(dataset, preview=False)
    assert not report.ok and report.warnings == []


# --- metadata file -----------------------------------------------------------------------------


def test_dataset_directory_missing(tmp_path):
    assert "no such dataset directory" in _errors(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "content,message",
    [(None, f"{META}: not found"), (b"", f"{META}: file is empty (0 bytes)"),
     (b"a,b\n1,2\n", f"{META}: not an Excel .xlsx file")],
    ids=["missing", "0-bytes", "csv"],
)
def test_metadata_file_problems(dataset, content, message):
    path = dataset / META
    path.unlink()
    if content is not None:
        path.write_bytes(content)
    assert message in _errors(dataset)


def test_metadata_without_rows(dataset):
    pd.DataFrame(columns=["image_path", "mask_path", "label", "patient_id"]).to_excel(dataset / META, index=False)
    assert f"{META}: no data rows" in _errors(dataset)


def test_missing_required_column_suggests_a_name(dataset, edit_metadata):
    edit_metadata(dataset, lambda t: t.rename(columns={"label": "labels", "mask_path": "zzz"}))
    text = _errors(dataset)
    assert 'required column "label" is missing' in text and 'Did you mean "labels"?' in text
    assert 'required column "mask_path" is missing' in text and "--columns mask_path=<column>" in text


def test_mapping_to_a_column_that_is_not_there(dataset):
    text = _errors(dataset, {"label": "diagnosis"})
    assert 'column mapping label=diagnosis: training_metadata.xlsx has no column "diagnosis"' in text


# --- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, "tumour", 1.5, None])
def test_unknown_label(dataset, edit_metadata, value):
    _set(edit_metadata, dataset, 5, "label", value)
    text = _errors(dataset)
    assert f"{META} row 5 (image m003): label" in text and "is not one of 0/1/2" in text


def test_duplicate_image_id(dataset, edit_metadata):
    _set(edit_metadata, dataset, 9, "image_id", "b001")
    assert f'{META} row 9 (image b001): image id "b001" is already used on row 3' in _errors(dataset)


def test_missing_patient_id(make_dataset, tmp_path):
    root = make_dataset(tmp_path / "ds", n=6, missing_patient_ids=[4])
    assert f"{META} row 6 (image n004): patient_id is empty" in _errors(root)


def test_patient_with_two_labels(dataset, edit_metadata):
    _set(edit_metadata, dataset, 5, "patient_id", "P000")  # m003 joins b000/b001's patient
    text = _errors(dataset)
    assert 'patient "P000" has images with different labels' in text
    assert "b000 (row 2, Benign)" in text and "m003 (row 5, Malignant)" in text


def test_label_name_disagreement_is_a_warning(dataset, edit_metadata):
    _set(edit_metadata, dataset, 2, "label_name", "Malignant")
    report = check_dataset(dataset, preview=False)
    assert report.ok and any("row 2 (image b000): label 0 (Benign) disagrees" in w for w in report.warnings)


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["image_path", "mask_path"])
@pytest.mark.parametrize("value", ["../outside.png", "/etc/hostname", "images/../../outside.png", "link.png"])
def test_paths_leaving_the_dataset_are_refused_and_never_opened(
    dataset, edit_metadata, write_png, monkeypatch, column, value
):
    outside = write_png(dataset.parent / "outside.png", np.zeros((48, 48), np.uint8))
    os.symlink(outside, dataset / "link.png")
    _set(edit_metadata, dataset, 3, column, value)
    opened = []
    real = io._read_bytes
    monkeypatch.setattr(io, "_read_bytes", lambda p: opened.append(os.path.realpath(p)) or real(p))
    text = _errors(dataset)
    assert f"{META} row 3 (image b001): {column}" in text and "Refused, not opened" in text
    assert str(outside) not in opened and "/etc/hostname" not in opened
    assert len(opened) == 2 * 11  # the refused row is skipped whole


# --- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["images/b001.png", "masks/b001_mask.png"])
def test_missing_file(dataset, which):
    (dataset / which).unlink()
    expected = f"{which}: no such file (row 3, image b001); fix the path in the metadata or add the file."
    assert expected in _errors(dataset)


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda b: b"", "empty file (0 bytes)"),
        (lambda b: b[: len(b) // 2], "truncated PNG"),
        (lambda b: b"GIF89a not a png at all", "not a PNG file"),
        (lambda b: b[:60] + bytes([b[60] ^ 0xFF]) + b[61:], "corrupt PNG (bad CRC"),
    ],
    ids=["0-bytes", "truncated", "not-png", "bitflip"],
)
@pytest.mark.parametrize("which", ["images/m002.png", "masks/m002_mask.png"])
def test_unreadable_file(dataset, which, damage, reason):
    path = dataset / which
    path.write_bytes(damage(path.read_bytes()))
    text = _errors(dataset)
    assert f"{which}: {reason}" in text and "(row 4, image m002)" in text and ("re-export" in text or "convert" in text)


def test_mask_size_differs_from_image(dataset, write_png):
    write_png(dataset / "masks" / "b001_mask.png", np.zeros((40, 50), np.uint8) + 255)
    assert (
        "masks/b001_mask.png: size 50x40 differs from its image images/b001.png (48x48) (row 3, image b001); "
        "re-export the mask at the image size." in _errors(dataset)
    )


def test_normal_image_with_a_lesion(dataset, write_png):
    mask = np.zeros((48, 48), np.uint8)
    mask[10:13, 10:14] = 255
    write_png(dataset / "masks" / "n004_mask.png", mask)
    expected = "masks/n004_mask.png: Normal image has a non-empty mask (12 lesion px) (row 6, image n004)"
    assert expected in _errors(dataset)


def test_lesion_image_with_empty_mask(dataset, write_png):
    write_png(dataset / "masks" / "m003_mask.png", np.zeros((48, 48), np.uint8))
    expected = "masks/m003_mask.png: Malignant image has an empty mask (row 5, image m003); draw the lesion"
    assert expected in _errors(dataset)


def test_lesion_image_without_mask_path(dataset, edit_metadata):
    _set(edit_metadata, dataset, 2, "mask_path", None)
    assert f"{META} row 2 (image b000): Benign image has no mask_path" in _errors(dataset)


# --- everything at once --------------------------------------------------------------------------


def test_every_problem_is_reported_together_one_line_each(dataset, edit_metadata, write_png):
    def damage(t):
        t["label"] = t["label"].astype(object)
        t.loc[0, "label"] = "x"  # row 2
        t.loc[1, "image_path"] = "../b.png"  # row 3
        t.loc[7, "image_id"] = "n004"  # row 9 duplicates row 6
        return t

    edit_metadata(dataset, damage)
    (dataset / "images" / "m002.png").unlink()  # row 4
    (dataset / "masks" / "m003_mask.png").write_bytes(b"")  # row 5
    write_png(dataset / "masks" / "b006_mask.png", np.full((10, 10), 255, np.uint8))  # row 8
    report = check_dataset(dataset)
    assert len(report.errors) == 6, report.errors
    assert all("\n" not in e for e in report.errors)
    for culprit in ("row 2", "row 3", "row 9", "images/m002.png", "masks/m003_mask.png", "masks/b006_mask.png"):
        assert sum(culprit in e for e in report.errors) == 1, culprit
    assert "split_preview" not in report.summary
