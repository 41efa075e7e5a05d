"""Patient-wise, class-stratified K-fold cross-validation over a split's non-test images, saved as data.

Selecting a configuration on one small validation subset overfits that subset (the winner's curse);
a study with ``selection: {folds: K}`` scores every trial on K folds instead, as nnU-Net does with its
5-fold cross-validation. The folds are made once from a parent split and saved next to it as
ordinary split files, ``splits/<split>.fold<k>of<K>.json`` (k = 0 .. K-1): fold k's validation
subset is the k-th part of the parent's non-test images, its train subset the other K-1 parts and
its test subset the parent's test subset, untouched. Each file also records which parent it was
made from (``source``: a hash of the parent's test ids, seed and duplicate grouping), so folds of a
parent that was re-made are refused instead of silently leaking test patients into training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from harness.data.io import read_text
from harness.data.output import output_problem, write_bytes_atomic
from harness.data.records import DatasetIndex
from harness.data.splits import Split, _counts, load_split, split_groups, split_path
from harness.errors import DataError

logger = logging.getLogger(__name__)

MAX_FOLDS = 20


def fold_name(split: str, fold: int, folds: int) -> str:
    """``study.fold2of5``: the split name of fold ``fold`` (0-based) of ``folds``."""
    return f"{split}.fold{fold}of{folds}"


def source_hash(parent: Split) -> str:
    """What the folds of ``parent`` depend on: its test ids, seed and duplicate grouping (not its val part)."""
    blob = json.dumps({"test": sorted(parent.test), "seed": parent.seed,
                       "group_duplicates": parent.group_duplicates}).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_folds(index: DatasetIndex, parent: Split, folds: int) -> list[Split]:
    """K patient-group-disjoint, class-stratified folds of ``parent``'s non-test images (no I/O but hashing
    images when the parent groups near-duplicates)."""
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: ~1.4 s import

    if not 2 <= folds <= MAX_FOLDS:
        raise DataError(f"folds must be in [2, {MAX_FOLDS}] for cross-validation, but got folds={folds}.")
    ids = index.ids()
    test = set(parent.test)
    pool = np.array([n for n, i in enumerate(ids) if i not in test], dtype=np.int64)
    groups_all, n_merged = split_groups(index, parent.group_duplicates)
    labels, groups = index.labels()[pool], groups_all[pool]
    n_groups, largest = len(np.unique(groups)), int(np.bincount(labels).max()) if len(labels) else 0
    if min(n_groups, largest) < folds:
        raise DataError(f"{folds} folds need at least {folds} patient groups and a class with {folds} images "
                        f"outside the test subset of splits/{parent.name}.json, but it has {n_groups} groups and "
                        f"at most {largest} images of a class; use fewer folds (selection.folds).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        kfold = StratifiedGroupKFold(folds, shuffle=True, random_state=parent.seed)
        parts = [val for _, val in kfold.split(labels, labels, groups)]
    out = []
    for k, part in enumerate(parts):
        in_val = np.zeros(len(pool), dtype=bool)
        in_val[part] = True
        subsets = {"train": tuple(ids[pool[n]] for n in np.flatnonzero(~in_val)),
                   "val": tuple(ids[pool[n]] for n in np.flatnonzero(in_val)), "test": tuple(parent.test)}
        missing = sorted(set(labels.tolist()) - set(labels[in_val].tolist()))
        if missing:
            logger.warning("fold %d of %d of split %s has no validation image of class(es) %s; its metrics "
                           "cover the other classes only.", k, folds, parent.name, missing)
        out.append(Split(fold_name(parent.name, k, folds), subsets["train"], subsets["val"], subsets["test"],
                         parent.seed, (1 - parent.test_fraction) / folds, parent.test_fraction, index.metadata_hash,
                         _counts(index, subsets), n_merged, parent.group_duplicates))
    return out


def _save(split: Split, parent: Split, fold: int, folds: int, root: Path) -> Path:
    path = split_path(root, split.name)
    payload = split.to_json() | {"fold": fold, "folds": folds, "parent": parent.name, "source": source_hash(parent)}
    write_bytes_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())
    return path


def _stale(parent: Split, folds: int, why: str) -> DataError:
    return DataError(f"splits/{fold_name(parent.name, 0, folds).replace('fold0', 'fold*')}.json: {why}; delete "
                     f"these {folds} files to make the folds of splits/{parent.name}.json again.")


def load_fold(index: DatasetIndex, parent: Split, fold: int, folds: int) -> Split:
    """Read one saved fold and check it against the dataset (as any split) and against ``parent``."""
    name = fold_name(parent.name, fold, folds)
    split = load_split(index.root, name, index)  # metadata hash, unknown/missing ids, patients in two subsets
    data = json.loads(read_text(split_path(index.root, name)))  # load_split has validated it
    if data.get("source") != source_hash(parent) or set(split.test) != set(parent.test):
        raise _stale(parent, folds, f"{name}.json was made from another version of splits/{parent.name}.json "
                                    "(test subset, seed or duplicate grouping)")
    if (data.get("fold"), data.get("folds")) != (fold, folds):
        raise _stale(parent, folds, f"{name}.json says it is fold {data.get('fold')} of {data.get('folds')}")
    return split


def get_or_create_folds(index: DatasetIndex, parent: Split, folds: int) -> list[Split]:
    """The ``folds`` cross-validation splits of ``parent``: loaded when saved, else made and saved (once,
    under a file lock, so concurrent trials agree)."""
    from filelock import FileLock

    names = [fold_name(parent.name, k, folds) for k in range(folds)]
    paths = [split_path(index.root, n) for n in names]
    if all(p.exists() for p in paths):
        return [load_fold(index, parent, k, folds) for k in range(folds)]
    try:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_problem(paths[0].parent, e, "cannot create the splits directory") from None
    with FileLock(str(paths[0].parent / f".{parent.name}.folds.lock")):
        if all(p.exists() for p in paths):  # another process made them meanwhile
            return [load_fold(index, parent, k, folds) for k in range(folds)]
        made = make_folds(index, parent, folds)
        for k, (path, split) in enumerate(zip(paths, made, strict=True)):
            if path.exists():
                if load_fold(index, parent, k, folds).subsets() != split.subsets():
                    raise _stale(parent, folds, f"{names[k]}.json differs from the folds made now "
                                                f"(another scikit-learn version?) and some folds are missing")
            else:
                _save(split, parent, k, folds, index.root)
    sizes = ", ".join(str(len(s.val)) for s in made)
    logger.info("created %d cross-validation folds of split %s: splits/%s.json (validation images: %s)",
                folds, parent.name, fold_name(parent.name, 0, folds).replace("fold0", f"fold{{0..{folds - 1}}}"),
                sizes)
    return made
