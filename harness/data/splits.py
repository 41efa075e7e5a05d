"""Patient-wise, class-stratified splits, made once and saved as readable JSON.

A split is data (nnU-Net style): ``DIR/splits/<name>.json`` lists the image ids of each subset and
the hash of the metadata it was made from, so a changed workbook is detected instead of silently
leaking patients. Optionally, near-duplicate images (perceptual hash) are kept in one subset even
when their patient ids differ.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.data.io import FileProblem, read_image, read_text, write_bytes_atomic
from harness.data.records import METADATA_FILE, DatasetIndex, quoted
from harness.errors import DataError, one_line

logger = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
TABLE_ROWS = ("Normal", "Benign", "Malignant")  # the paper's Table 1 order
TABLE_COLUMNS = {"train": "Train", "val": "Validation", "test": "Test"}
DUPLICATE_THRESHOLD = 24  # max Hamming distance of 256-bit pHashes for "the same image"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch: "$" would let a trailing newline in
MAX_SEED = 2**32 - 1  # what numpy and scikit-learn accept as a random_state


@dataclass(frozen=True)
class Split:
    """Image ids per subset plus how the split was made. ``val`` is the id list; the fraction is ``val_fraction``."""

    name: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()
    seed: int = 42
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    metadata_hash: str = ""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    groups_merged: int = 0
    group_duplicates: bool = False

    def subsets(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def table(self) -> pd.DataFrame:
        """Images per class and subset, laid out like the paper's Table 1."""
        names = ["train", "val"] + (["test"] if self.test or self.test_fraction > 0 else [])
        data = {TABLE_COLUMNS[s]: [self.counts.get(s, {}).get(c, 0) for c in TABLE_ROWS] for s in names}
        table = pd.DataFrame(data, index=list(TABLE_ROWS))
        table.index.name = "Class"
        return table

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "val": self.val_fraction,
            "test": self.test_fraction,
            "metadata_hash": self.metadata_hash,
            "group_duplicates": self.group_duplicates,
            "groups_merged": self.groups_merged,
            "subsets": {s: list(ids) for s, ids in self.subsets().items()},
            "counts": self.counts,
        }


# ---------------------------------------------------------------------------------------------
# Near-duplicate grouping


def phash(image: np.ndarray) -> np.ndarray:
    """256-bit DCT perceptual hash (32 packed bytes): low 16x16 DCT coefficients of a 64x64 thumbnail vs their median.

    Robust to re-encoding, resizing, brightness and mild noise; 256 rather than the classic 64 bits
    because ultrasound images share a lot of coarse structure.
    """
    import scipy.fft  # lazy: ~0.4 s import, only needed for --group-duplicates

    small = cv2.resize(np.asarray(image, dtype=np.float32), (64, 64), interpolation=cv2.INTER_AREA)
    coeffs = scipy.fft.dctn(small, norm="ortho")[:16, :16].ravel()
    return np.packbits(coeffs > np.median(coeffs[1:]))


def hamming_pairs(hashes: Sequence[np.ndarray] | np.ndarray, threshold: int) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose packed hashes differ in at most ``threshold`` bits."""
    h = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint8)).view(np.uint64)  # (N, words)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(h), 512):
        block = h[start : start + 512]
        dist = np.bitwise_count(block[:, None, :] ^ h[None, :, :]).sum(axis=2)
        for i, j in zip(*np.nonzero(dist <= threshold), strict=True):
            if start + i < j:
                pairs.append((int(start + i), int(j)))
    return pairs


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def split_groups(
    index: DatasetIndex, group_duplicates: bool = False, threshold: int = DUPLICATE_THRESHOLD
) -> tuple[np.ndarray, int]:
    """Group number per record (patients, merged across near-duplicate images); and how many merged."""
    patients = index.patients()
    first: dict[str, int] = {}
    groups = [first.setdefault(p, len(first)) for p in patients]
    if not group_duplicates:
        return np.array(groups), 0
    logger.info("hashing %d images to find near-duplicates ...", len(index))
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashes = list(pool.map(lambda r: phash(read_image(index.image_file(r))), index.records))
    parent = list(range(len(first)))
    pairs = hamming_pairs(hashes, threshold)
    for i, j in pairs:
        a, b = _find(parent, groups[i]), _find(parent, groups[j])
        if a != b:
            parent[max(a, b)] = min(a, b)
        ri, rj = index.records[i], index.records[j]
        if ri.label != rj.label:
            logger.warning(
                "near-duplicate images %s (row %d, %s) and %s (row %d, %s) have different labels; check them.",
                ri.image_id, ri.row, ri.label_name, rj.image_id, rj.row, rj.label_name,
            )
    merged = [_find(parent, g) for g in groups]
    n_merged = len(first) - len(set(merged))
    logger.info(
        "near-duplicates: %d image pair(s) within Hamming distance %d; %d patient group(s) merged, %d groups left.",
        len(pairs), threshold, n_merged, len(set(merged)),
    )
    return np.array(merged), n_merged


# ---------------------------------------------------------------------------------------------
# Making a split


def _score(labels: np.ndarray, groups: np.ndarray, carved: np.ndarray, frac: float) -> float:
    """Distance of the carved part from the wanted per-class counts; a class lost on either side costs most."""
    score = 0.0
    for c in np.unique(labels):
        in_class = labels == c
        n_c, got = in_class.sum(), (in_class & carved).sum()
        score += abs(got - frac * n_c)
        if len(np.unique(groups[in_class])) >= 2 and (got == 0 or got == n_c):
            score += 10.0 * len(labels)
    return score


def carve(labels: np.ndarray, groups: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Boolean mask of a group-disjoint, class-stratified part of size ~``frac``.

    Candidates are unions of m consecutive StratifiedGroupKFold folds with K ~ m/frac
    (m = 1..3, so fractions that are not 1/K are still met); the best-matching one wins.
    """
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: ~1.4 s import; loading a split needs none

    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"cannot split {len(labels)} image(s) from a single patient group; "
                        "add images of other patients.")
    k_max = min(n_groups, int(np.bincount(labels).max()))  # sklearn needs k <= the largest class
    if k_max < 2:
        raise DataError(f"cannot split {len(labels)} image(s): no class has images of two patient groups; add images.")
    best, best_score, seen = None, np.inf, set()
    for m in (1, 2, 3):
        k = min(max(round(m / frac), m + 1), k_max)
        if k <= m or round(m / k, 6) in seen:
            continue
        seen.add(round(m / k, 6))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
            kfold = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
            folds = [t for _, t in kfold.split(labels, labels, groups)]
        for start in range(k):
            carved = np.zeros(len(labels), bool)
            for f in range(m):
                carved[folds[(start + f) % k]] = True
            score = _score(labels, groups, carved, frac)
            if score < best_score - 1e-9:
                best, best_score = carved, score
    assert best is not None
    return best


def _counts(index: DatasetIndex, subsets: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    by_id = index.by_id()
    out = {}
    for name, ids in subsets.items():
        labels = [by_id[i].label for i in ids]
        out[name] = {c: labels.count(k) for k, c in enumerate(CLASS_NAMES)}
    return out


def check_split_arguments(val: float, test: float, seed: int) -> None:
    """Every problem with a split's fractions and seed, raised together (before any work is done)."""
    problems = []
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= MAX_SEED:
        problems.append(f"seed must be an integer in [0, 2**32 - 1], but got seed={seed!r}.")
    if not 0 < val < 1:
        problems.append(f"val must be in (0, 1), but got val={val}.")
    if not 0 <= test < 1:
        problems.append(f"test must be in [0, 1), but got test={test}.")
    if not problems and val + test >= 0.9:
        problems.append(f"val + test must be < 0.9, but got {val} + {test}.")
    if problems:
        raise DataError(problems)


def make_split(
    index: DatasetIndex,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 42,
    group_duplicates: bool = False,
    *,
    name: str = "default",
    duplicate_threshold: int = DUPLICATE_THRESHOLD,
) -> Split:
    """Patient-wise (group-disjoint), class-stratified train/val[/test] split of ``index``.

    The test part is carved first (from everything), then validation from the rest. Each subset
    gets every class whenever that class has at least two patient groups.
    """
    check_split_arguments(val, test, seed)
    labels = index.labels()
    groups, n_merged = split_groups(index, group_duplicates, duplicate_threshold)
    subset_of = np.full(len(labels), "train", dtype=object)
    pool = np.arange(len(labels))
    if test > 0:
        carved = carve(labels, groups, test, seed)
        subset_of[carved] = "test"
        pool = pool[~carved]
    carved = carve(labels[pool], groups[pool], val / (1 - test), seed)
    subset_of[pool[carved]] = "val"
    ids = index.ids()
    subsets = {s: tuple(i for i, where in zip(ids, subset_of, strict=True) if where == s) for s in SUBSETS}
    return Split(
        name, subsets["train"], subsets["val"], subsets["test"], seed, val, test, index.metadata_hash,
        _counts(index, subsets), n_merged, group_duplicates,
    )


# ---------------------------------------------------------------------------------------------
# Files


def split_path(root: Path, name: str) -> Path:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"split name {quoted(str(name))} must be 1-100 letters, digits, '_', '-' or '.', starting "
                        "with a letter or digit (it becomes splits/<name>.json).")
    return Path(root) / "splits" / f"{name}.json"


def save_split(split: Split, root: Path, name: str | None = None) -> Path:
    """Write ``root/splits/<name>.json`` atomically and return its path."""
    path = split_path(root, name or split.name)
    payload = split.to_json() | {"name": name or split.name}
    write_bytes_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())
    return path


class _Fields:
    """Typed reads of a split file's fields; every problem is collected with the field's name."""

    def __init__(self, data: dict, rel: str):
        self.data, self.rel = data, rel
        self.problems: list[str] = []

    def _bad(self, key: str, want: str) -> None:
        shown = one_line(json.dumps(self.data.get(key)), 60)
        self.problems.append(f"{self.rel}: {key} must be {want}, but got {key}={shown}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            self._bad(key, "a string")
            return ""
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self._bad(key, f"an integer in [{low}, {high}]")
            return low
        return value

    def fraction(self, key: str, low_open: bool) -> float:
        value = self.data.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (
            0 < value < 1 if low_open else 0 <= value < 1)
        if not ok:
            self._bad(key, "a number in (0, 1)" if low_open else "a number in [0, 1)")
            return 0.5
        return float(value)  # type: ignore[arg-type]

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            self._bad(key, "true or false")
            return False
        return value

    def subsets(self) -> dict[str, list[str]]:
        value = self.data.get("subsets")
        if not isinstance(value, dict) or not set(value) <= set(SUBSETS):
            self._bad("subsets", f"a mapping of {', '.join(SUBSETS)} to lists of image ids")
            return {s: [] for s in SUBSETS}
        out = {}
        for s in SUBSETS:
            ids = value.get(s, [])
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                self.problems.append(f"{self.rel}: subsets.{s} must be a list of image ids (strings)")
                ids = []
            out[s] = ids
        return out


def _read_split_file(path: Path, rel: str, todo: str) -> dict:
    try:
        data = json.loads(read_text(path))
    except FileProblem as e:
        raise DataError(f"{rel}: {e.reason}; {todo}.") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int of over 4300 digits, [[[[...]]]]
        raise DataError(f"{rel}: not a valid split file ({type(e).__name__}: {one_line(e)}); {todo}.") from None
    if not isinstance(data, dict):
        raise DataError(f"{rel}: not a valid split file (a JSON object is expected, not {type(data).__name__}); "
                        f"{todo}.")
    return data


def load_split(root: Path, name: str, index: DatasetIndex) -> Split:
    """Read a saved split and verify it against ``index`` (metadata hash, ids, patient disjointness).

    Every field is type- and range-checked; all problems of a damaged file are raised together.
    """
    path = split_path(root, name)
    rel = f"splits/{name}.json"
    todo = f"re-run harness data split {root} --name {name} --force"
    if not path.exists():
        raise DataError(f"{rel}: no such split in {root}; create it with: harness data split {root} --name {name}")
    fields = _Fields(_read_split_file(path, rel, todo), rel)
    subsets = fields.subsets()
    metadata_hash = fields.text("metadata_hash")
    seed = fields.integer("seed", 0, MAX_SEED)
    val, test = fields.fraction("val", True), fields.fraction("test", False)
    groups_merged = fields.integer("groups_merged", 0, 2**31 - 1, default=0)
    group_duplicates = fields.flag("group_duplicates")
    split_name = fields.text("name", default=name)
    if fields.problems:
        raise DataError([f"{p}; {todo}." for p in fields.problems])
    if metadata_hash != index.metadata_hash:
        raise DataError(
            f"{rel} was made for another version of {METADATA_FILE} (hash {quoted(metadata_hash)}, now "
            f"{index.metadata_hash}); {todo}"
        )
    by_id = index.by_id()
    problems = []
    seen: dict[str, str] = {}
    patient_in: dict[str, str] = {}
    for s, ids in subsets.items():
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            shown = ", ".join(i if i.isprintable() and len(i) <= 40 else quoted(i, 40) for i in unknown[:5])
            problems.append(f"{rel}: {len(unknown)} unknown image id(s) in {s}: {shown}; {todo}.")
        for i in ids:
            if i in seen:
                problems.append(f"{rel}: image {quoted(i)} is in both {seen[i]} and {s}; {todo}.")
            seen[i] = s
            if i in by_id:
                pid = by_id[i].patient_id
                other = patient_in.setdefault(pid, s)
                if other != s:
                    problems.append(f"{rel}: patient {quoted(pid)} has images in both {other} and {s} (e.g. {i}); "
                                    f"{todo}.")
                    patient_in[pid] = s
    missing = [i for i in by_id if i not in seen]
    if missing:
        problems.append(f"{rel}: {len(missing)} image(s) of the dataset are in no subset "
                        f"(e.g. {', '.join(missing[:3])}); {todo}.")
    if problems:
        raise DataError(list(dict.fromkeys(problems)))
    return Split(
        split_name, tuple(subsets["train"]), tuple(subsets["val"]), tuple(subsets["test"]),
        seed, val, test, metadata_hash, _counts(index, subsets), groups_merged, group_duplicates,
    )


def get_or_create_split(
    index: DatasetIndex,
    name: str = "default",
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 42,
    *,
    group_duplicates: bool = False,
) -> Split:
    """Load ``splits/<name>.json`` as it was written if it exists, else make it from the arguments and save it.

    The arguments only say how to *create* a missing split: a split made by ``harness data split``
    with other options (``--seed 3``, ``--group-duplicates``) is used as written, and a difference is
    logged as a note. A split file is data, so a run never re-splits behind the user's back.
    """
    path = split_path(index.root, name)
    if path.exists():
        split = load_split(index.root, name, index)
        want = (val, test, seed, group_duplicates)
        have = (split.val_fraction, split.test_fraction, split.seed, split.group_duplicates)
        if not np.allclose(want[:2], have[:2]) or want[2:] != have[2:]:
            logger.info(
                "note: using splits/%s.json as written (val=%s, test=%s, seed=%s, group_duplicates=%s); the "
                "run's val=%s, test=%s, seed=%s, group_duplicates=%s apply only when a split is created "
                "(choose another data.split name to create one).",
                name, *have, *want,
            )
        return split
    split = make_split(index, val, test, seed, group_duplicates, name=name)
    saved = save_split(split, index.root, name)
    sizes = ", ".join(f"{s} {len(i)}" for s, i in split.subsets().items() if i)
    logger.info("created split %s at %s (%s)", name, saved, sizes)
    return split
