"""harness.data.splits: patient-wise stratified splits, their JSON files and duplicate grouping."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from harness.data.check import load_index
from harness.data.io import read_image
from harness.data.splits import (
    Split,
    get_or_create_split,
    hamming_pairs,
    load_split,
    make_split,
    phash,
    save_split,
)
from harness.errors import DataError
from harness.testing.datasets import make_patient_dataset


@pytest.fixture(scope="module")
def big_template(tmp_path_factory):
    sizes = np.random.default_rng(3).integers(1, 5, 40)
    patients = np.repeat(np.arange(40), sizes)[:90]
    labels = [int(p % 3 if p % 5 else 0) for p in patients]
    return make_patient_dataset(tmp_path_factory.mktemp("big") / "big", patients, labels)


@pytest.fixture
def big(big_template, tmp_path):
    """90 images, 40 patients (1-4 images each), unbalanced classes; a fresh copy per test."""
    return load_index(shutil.copytree(big_template, tmp_path / "big"), check=False)


def _subset_of(split: Split) -> dict[str, str]:
    return {i: s for s, ids in split.subsets().items() for i in ids}


def _assert_patient_wise(index, split):
    where = _subset_of(split)
    assert sorted(where) == sorted(index.ids())  # every image exactly once
    assert sum(len(v) for v in split.subsets().values()) == len(index)
    by_patient: dict[str, set] = {}
    for r in index.records:
        by_patient.setdefault(r.patient_id, set()).add(where[r.image_id])
    assert all(len(s) == 1 for s in by_patient.values())


@pytest.mark.parametrize("seed", [0, 42])
def test_split_is_patient_wise_stratified_and_complete(big, seed):
    split = make_split(big, val=0.2, seed=seed)
    _assert_patient_wise(big, split)
    assert split.test == ()
    labels = big.labels()
    val = np.isin(big.ids(), split.val)
    for c in range(3):
        assert abs(val[labels == c].mean() - 0.2) < 0.1, f"class {c}"
    assert all(n > 0 for n in split.counts["val"].values()) and all(n > 0 for n in split.counts["train"].values())


def test_split_with_test_part(big):
    split = make_split(big, val=0.2, test=0.2, seed=1)
    _assert_patient_wise(big, split)
    for part in (split.val, split.test):
        assert abs(len(part) / len(big) - 0.2) < 0.08
    assert list(split.table().columns) == ["Train", "Validation", "Test"]


def test_fraction_that_is_not_one_over_k(big):
    split = make_split(big, val=0.3, seed=0)
    assert abs(len(split.val) / len(big) - 0.3) < 0.06


def test_split_is_deterministic_per_seed(big):
    assert make_split(big, seed=7) == make_split(big, seed=7)
    assert {make_split(big, seed=s).val for s in range(4)}.__len__() > 1


def test_tiny_dataset_still_gets_every_class_in_each_subset(dataset):
    split = make_split(load_index(dataset, check=False), val=0.2)
    assert all(split.counts["val"][c] > 0 for c in ("Benign", "Malignant", "Normal"))
    assert all(split.counts["train"][c] > 0 for c in ("Benign", "Malignant", "Normal"))


def test_table_looks_like_the_papers_table_1(big):
    table = make_split(big).table()
    assert list(table.index) == ["Normal", "Benign", "Malignant"] and list(table.columns) == ["Train", "Validation"]
    assert table.to_numpy().sum() == len(big)
    assert table.loc["Benign"].sum() == big.class_counts()["Benign"]


@pytest.mark.parametrize("val,test,msg",
                         [(0, 0, "val must be"), (0.5, 0.45, "val \\+ test"), (0.2, -0.1, "test must be")])
def test_bad_fractions(big, val, test, msg):
    with pytest.raises(DataError, match=msg):
        make_split(big, val=val, test=test)


def test_single_patient_cannot_be_split(make_dataset, tmp_path):
    root = make_dataset(tmp_path / "one", n=3, labels=[0, 0, 0], images_per_patient=3)
    with pytest.raises(DataError, match="single patient group"):
        make_split(load_index(root, check=False))


def test_save_and_load_round_trip(big):
    split = make_split(big, seed=5, name="mine")
    path = save_split(split, big.root, "mine")
    assert path == big.root / "splits" / "mine.json"
    data = json.loads(path.read_text())
    assert set(data) >= {"name", "seed", "val", "test", "metadata_hash", "subsets", "counts", "groups_merged"}
    assert data["counts"]["val"] == split.counts["val"] and data["subsets"]["val"] == list(split.val)
    assert load_split(big.root, "mine", big) == split


def test_bad_split_name(big):
    with pytest.raises(DataError, match="split name"):
        save_split(make_split(big), big.root, "../evil")


def test_load_split_detects_changed_metadata(big, edit_metadata):
    save_split(make_split(big), big.root, "default")
    edit_metadata(big.root, lambda t: t.assign(label_name=t["label_name"].str.lower()))
    changed = load_index(big.root, check=False)
    msg = r"splits/default.json was made for another version of training_metadata.xlsx.*re-run harness data split"
    with pytest.raises(DataError, match=msg):
        load_split(big.root, "default", changed)


def _edit_split(root, fn):
    path = root / "splits" / "default.json"
    data = json.loads(path.read_text())
    fn(data["subsets"])
    path.write_text(json.dumps(data))


def test_load_split_detects_patient_in_two_subsets(big):
    save_split(make_split(big), big.root, "default")
    patient = next(r.patient_id for r in big.records if sum(q.patient_id == r.patient_id for q in big.records) > 1)
    moved = next(r.image_id for r in big.records if r.patient_id == patient)

    def move(subsets):
        src = "train" if moved in subsets["train"] else "val"
        subsets[src].remove(moved)
        subsets["val" if src == "train" else "train"].append(moved)

    _edit_split(big.root, move)
    with pytest.raises(DataError, match=f'patient "{patient}" has images in both'):
        load_split(big.root, "default", big)


def test_load_split_detects_unknown_and_missing_ids(big):
    save_split(make_split(big), big.root, "default")
    _edit_split(big.root, lambda s: s["val"].__setitem__(0, "ghost"))
    with pytest.raises(DataError) as err:
        load_split(big.root, "default", big)
    text = "\n".join(err.value.problems)
    assert "unknown image id(s) in val: ghost" in text and "in no subset" in text


def test_load_split_missing_or_garbage_file(big):
    with pytest.raises(DataError, match="no such split.*harness data split"):
        load_split(big.root, "nope", big)
    (big.root / "splits").mkdir()
    (big.root / "splits" / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid split file"):
        load_split(big.root, "bad", big)


def test_get_or_create_split_creates_once_then_loads(big, caplog):
    with caplog.at_level(logging.INFO, logger="harness.data.splits"):
        first = get_or_create_split(big, "default", 0.2, 0.0, 42)
    assert "created split default at" in caplog.text
    path = big.root / "splits" / "default.json"
    mtime = path.stat().st_mtime_ns
    assert get_or_create_split(big, "default", 0.2, 0.0, 42) == first
    assert path.stat().st_mtime_ns == mtime


def test_an_existing_split_is_used_as_written_with_a_note(big, caplog):
    """A split made with other options (harness data split --seed 3 --group-duplicates) is data: a run
    with other split fields uses it unchanged and only notes the difference."""
    made = make_split(big, 0.3, 0.2, 3, group_duplicates=True, name="s3")
    save_split(made, big.root)
    path = big.root / "splits" / "s3.json"
    before = path.read_bytes()
    with caplog.at_level(logging.INFO, logger="harness.data.splits"):
        used = get_or_create_split(big, "s3", 0.2, 0.0, 42, group_duplicates=False)
    assert used.subsets() == made.subsets() and (used.seed, used.group_duplicates) == (3, True)
    assert path.read_bytes() == before, "the file is not rewritten"
    assert "using splits/s3.json as written" in caplog.text and "seed=3" in caplog.text
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_group_duplicates_is_passed_when_the_split_is_created(big):
    split = get_or_create_split(big, "grouped", 0.2, 0.2, 42, group_duplicates=True)
    assert split.group_duplicates and json.loads((big.root / "splits" / "grouped.json").read_text())["group_duplicates"]


def test_phash_near_copies_are_close_and_different_images_far(big):
    a = read_image(big.image_file(big.records[0]))
    b = read_image(big.image_file(big.records[5]))
    rng = np.random.default_rng(0)
    copy = np.clip(a.astype(int) + 12 + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
    hashes = np.stack([phash(a), phash(copy), phash(b)])
    assert hashes.shape == (3, 32)
    assert hamming_pairs(hashes, 24) == [(0, 1)]


def test_group_duplicates_keeps_near_copies_together(make_dataset, tmp_path, write_png, caplog):
    root = make_dataset(tmp_path / "dup", n=30, size=48, images_per_patient=1, seed=4)
    table = pd.read_excel(root / "training_metadata.xlsx", dtype=object)
    rng = np.random.default_rng(0)
    original = read_image(root / "images" / "b000.png")
    rows = []
    for k in range(3):  # re-exports of b000 filed under other patients
        copy = np.clip(original.astype(int) + 5 * k + rng.normal(0, 1.5, original.shape), 0, 255)
        write_png(root / "images" / f"dup{k}.png", copy.astype(np.uint8))
        shutil.copy(root / "masks" / "b000_mask.png", root / "masks" / f"dup{k}_mask.png")
        rows.append({"image_id": f"dup{k}", "image_path": f"images/dup{k}.png", "mask_path": f"masks/dup{k}_mask.png",
                     "label": 0, "patient_id": f"X{k}", "label_name": "Benign"})
    pd.concat([table, pd.DataFrame(rows)], ignore_index=True).to_excel(root / "training_metadata.xlsx", index=False)
    index = load_index(root)
    family = ["b000", "dup0", "dup1", "dup2"]
    apart = 0
    for seed in range(6):
        plain = _subset_of(make_split(index, seed=seed))
        apart += len({plain[i] for i in family}) > 1
        with caplog.at_level(logging.INFO, logger="harness.data.splits"):
            grouped = make_split(index, seed=seed, group_duplicates=True)
        where = _subset_of(grouped)
        assert len({where[i] for i in family}) == 1 and grouped.groups_merged == 3
    assert apart > 0  # without grouping the copies do get separated
    assert "3 patient group(s) merged" in caplog.text
