"""harness.data.records: metadata -> records, column mapping, label forms, row-level errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from harness.data.check import load_index
from harness.data.records import METADATA_FILE, DatasetIndex, Record, parse_label, parse_metadata
from harness.errors import DataError


def test_load_index_of_a_valid_dataset(dataset):
    index = load_index(dataset)
    assert isinstance(index, DatasetIndex) and len(index) == 12
    first = index.records[0]
    assert first == Record("b000", "images/b000.png", "masks/b000_mask.png", 0, "P000", 2)
    assert [r.row for r in index.records] == list(range(2, 14))
    assert index.labels().dtype == np.int64 and list(index.labels()[:6]) == [0, 0, 1, 1, 2, 2]
    assert index.has_patient_ids and len(index.metadata_hash) == 16
    assert index.by_id()["m002"].label == 1
    assert index.class_counts() == {"Benign": 4, "Malignant": 4, "Normal": 4}
    assert index.image_file(first) == dataset / "images" / "b000.png"


@pytest.mark.parametrize(
    "value,expected",
    [(0, 0), (2, 2), (np.int64(1), 1), (1.0, 1), ("1", 1), (" 2 ", 2), ("0.0", 0), ("benign", 0), ("MALIGNANT", 1),
     ("Normal", 2), (3, None), (-1, None), (1.5, None), ("x", None), ("", None), (None, None), (float("nan"), None),
     (True, None)],
)
def test_parse_label(value, expected):
    assert parse_label(value) == expected


@pytest.mark.parametrize("style", ["int", "float", "str", "name"])
def test_label_styles_give_the_same_labels(make_dataset, tmp_path, style):
    index = load_index(make_dataset(tmp_path / style, n=6, label_style=style), check=False)
    assert list(index.labels()) == [0, 0, 1, 1, 2, 2]


def test_renamed_columns_via_mapping(make_dataset, tmp_path):
    rename = {"label": "diagnosis", "patient_id": "case", "image_path": "img"}
    root = make_dataset(tmp_path / "ds", n=6, columns=rename)
    index = load_index(root, rename)
    assert list(index.labels()) == [0, 0, 1, 1, 2, 2] and index.records[2].patient_id == "P001"
    with pytest.raises(DataError) as err:
        load_index(root)
    assert any('required column "label" is missing' in p and "--columns label=" in p for p in err.value.problems)
    assert any('"image_path"' in p for p in err.value.problems)


def test_mapping_errors_name_the_column_and_suggest(make_dataset, tmp_path):
    root = make_dataset(tmp_path / "ds", n=6, columns={"label": "diagnosis"})
    parsed = parse_metadata(root, {"label": "diagnosys", "lable_name": "x"})
    text = "\n".join(parsed.errors)
    assert 'has no column "diagnosys"' in text and 'Did you mean "diagnosis"?' in text
    assert '"lable_name" is not a known column name' in text and 'Did you mean "label_name"?' in text


def test_without_patient_ids_every_image_is_its_own_patient(make_dataset, tmp_path, caplog):
    root = make_dataset(tmp_path / "ds", n=6, patient_ids=False)
    with caplog.at_level(logging.WARNING):
        index = load_index(root, check=False)
    assert not index.has_patient_ids and index.patients() == index.ids()
    assert "patient-wise split cannot be guaranteed" in caplog.text


def test_image_id_defaults_to_file_stem(make_dataset, tmp_path):
    index = load_index(make_dataset(tmp_path / "ds", n=3, image_ids=False), check=False)
    assert index.ids() == ["b000", "b001", "m002"]


def test_normal_without_mask_cell_is_allowed(make_dataset, tmp_path):
    index = load_index(make_dataset(tmp_path / "ds", n=6, normal_masks=False))
    assert index.by_id()["n004"].mask_path is None and index.mask_file(index.by_id()["n004"]) is None


def test_subset_keeps_given_order_and_rejects_unknown(dataset):
    index = load_index(dataset, check=False)
    sub = index.subset(["n005", "b000"])
    assert sub.ids() == ["n005", "b000"] and sub.metadata_hash == index.metadata_hash
    with pytest.raises(DataError, match='not in .*b00x.*Did you mean "b00'):
        index.subset(["b00x"])


def test_hash_depends_on_bytes_and_mapping(dataset, edit_metadata):
    h1 = load_index(dataset, check=False).metadata_hash
    assert load_index(dataset, {"label": "label"}, check=False).metadata_hash == h1  # identity maps nothing
    by_name = load_index(dataset, {"label": "label_name"}, check=False)
    assert by_name.metadata_hash != h1 and list(by_name.labels()) == list(load_index(dataset, check=False).labels())
    edit_metadata(dataset, lambda t: t.assign(label_name=t["label_name"].str.upper()))
    assert load_index(dataset, check=False).metadata_hash != h1


def test_blank_rows_are_skipped_and_row_numbers_stay_excel_rows(dataset, edit_metadata):
    import pandas as pd

    edit_metadata(dataset, lambda t: pd.concat([t.iloc[:2], pd.DataFrame([{}]), t.iloc[2:]], ignore_index=True))
    index = load_index(dataset, check=False)
    assert len(index) == 12 and index.by_id()["m002"].row == 5


def test_check_false_still_raises_every_metadata_problem(dataset, edit_metadata):
    def damage(t):
        t.loc[1, "label"] = 7
        t.loc[3, "image_path"] = "../escape.png"
        return t

    edit_metadata(dataset, damage)
    with pytest.raises(DataError) as err:
        load_index(dataset, check=False)
    assert len(err.value.problems) == 2
    assert f"{METADATA_FILE} row 3 (image b001): label \"7\"" in err.value.problems[0]
    assert "row 5 (image m003): image_path" in err.value.problems[1]


def test_check_true_raises_file_problems_too(dataset):
    (dataset / "images" / "b001.png").unlink()
    assert load_index(dataset, check=False)
    with pytest.raises(DataError, match=r"images/b001.png: no such file \(row 3, image b001\)"):
        load_index(dataset)
