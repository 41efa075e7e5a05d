"""harness.data.folds: K-fold cross-validation over a split's non-test images, saved as split files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.data.check import load_index
from harness.data.folds import fold_name, get_or_create_folds, load_fold, make_folds
from harness.data.splits import get_or_create_split, load_split, make_split, save_split
from harness.errors import DataError
from harness.testing.datasets import make_patient_dataset


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    sizes = np.random.default_rng(5).integers(1, 4, 30)
    patients = np.repeat(np.arange(30), sizes)[:60]
    labels = [int(p % 3) for p in patients]
    return make_patient_dataset(tmp_path_factory.mktemp("cv") / "cv", patients, labels)


@pytest.fixture
def index(template, tmp_path):
    """60 images of 30 patients (1-3 images each), a fresh copy per test."""
    return load_index(shutil.copytree(template, tmp_path / "cv"), check=False)


@pytest.fixture
def parent(index):
    return get_or_create_split(index, "study", 0.2, 0.2, 42)


def test_folds_partition_the_non_test_images_patient_wise_and_stratified(index, parent):
    folds = make_folds(index, parent, 5)
    pool = set(parent.train) | set(parent.val)
    vals = [set(f.val) for f in folds]
    assert set().union(*vals) == pool and sum(map(len, vals)) == len(pool), "each non-test image validates once"
    by_id = index.by_id()
    for f in folds:
        assert f.test == parent.test and set(f.train) == pool - set(f.val)
        assert not {by_id[i].patient_id for i in f.train} & {by_id[i].patient_id for i in f.val}
        assert {by_id[i].label for i in f.val} == {0, 1, 2}, "every class validates in every fold"
    assert [f.name for f in folds] == [fold_name("study", k, 5) for k in range(5)] == \
        ["study.fold0of5", "study.fold1of5", "study.fold2of5", "study.fold3of5", "study.fold4of5"]


def test_folds_are_saved_once_as_split_files_and_loaded_as_written(index, parent):
    made = get_or_create_folds(index, parent, 3)
    paths = [index.root / "splits" / f"study.fold{k}of3.json" for k in range(3)]
    data = json.loads(paths[1].read_text())
    assert (data["fold"], data["folds"], data["parent"]) == (1, 3, "study") and data["source"]
    assert data["subsets"]["test"] == list(parent.test)
    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = get_or_create_folds(index, parent, 3)
    assert [f.subsets() for f in again] == [f.subsets() for f in made]
    assert [p.stat().st_mtime_ns for p in paths] == mtimes
    assert load_split(index.root, "study.fold2of3", index).val == made[2].val  # an ordinary split file too


def test_a_missing_fold_file_is_made_again(index, parent):
    made = get_or_create_folds(index, parent, 3)
    (index.root / "splits" / "study.fold1of3.json").unlink()
    assert [f.subsets() for f in get_or_create_folds(index, parent, 3)] == [f.subsets() for f in made]


def test_folds_of_a_remade_parent_are_refused(index, parent):
    get_or_create_folds(index, parent, 3)
    other = make_split(index, 0.2, 0.2, seed=7, name="study")  # another test subset under the same name
    save_split(other, index.root)
    with pytest.raises(DataError, match=r"study.fold\*of3.json: .*made from another version of splits/study.json"):
        get_or_create_folds(index, load_split(index.root, "study", index), 3)


def test_a_fold_file_claiming_another_fold_is_refused(index, parent):
    get_or_create_folds(index, parent, 3)
    path = index.root / "splits" / "study.fold0of3.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"fold": 2}))
    with pytest.raises(DataError, match="says it is fold 2 of 3"):
        load_fold(index, parent, 0, 3)


def test_too_many_folds_for_the_patients(index, parent):
    with pytest.raises(DataError, match="20 folds need at least 20 patient groups .* but it has 2[0-9] groups and "
                                        "at most 1[0-9] images of a class"):
        make_folds(index, parent, 20)
    with pytest.raises(DataError, match=r"folds must be in \[2, 20\]"):
        make_folds(index, parent, 1)
