"""Tiny datasets on disk for tests and benchmarks: the paper format and the BUSI layout.

:func:`make_dataset` writes a VALID paper-format directory (``images/``, ``masks/``,
``training_metadata.xlsx``) and knobs for every variation the data layer must accept (pixel
formats, odd sizes, renamed columns, label spellings, missing patient ids); tests then break it
on purpose one defect at a time. It returns the drawn ground truth too, so fake runs
(:mod:`harness.testing.runs`) can score predictions without reading the files back.

Only PIL and pandas write the files, never :mod:`harness.data`, so a bug in the product's I/O
cannot hide itself by writing and reading the same wrong thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness import CLASS_NAMES, NORMAL
from harness.testing.images import ultrasound_image, write_png

METADATA_FILE = "training_metadata.xlsx"
Size = int | tuple[int, int] | Sequence[tuple[int, int]]


@dataclass(frozen=True)
class FakeImage:
    """One written image with its ground truth; paths are absolute (as in ``predictions.csv``)."""

    image_id: str
    label: int
    image_path: Path
    mask_path: Path | None
    gt: np.ndarray
    patient_id: str = ""
    """The patient as the harness reads it: the metadata's patient_id, else the image id."""


@dataclass(frozen=True)
class FakeDataset:
    """What :func:`make_dataset` wrote: the directory and every image in metadata order."""

    root: Path
    images: tuple[FakeImage, ...]


def _sizes(size: Size) -> list[tuple[int, int]]:
    if isinstance(size, int):
        return [(size, size)]
    pairs = np.asarray(size, dtype=int).reshape(-1, 2)  # one (w, h) or a sequence of them
    return [(int(w), int(h)) for w, h in pairs]


def _patients(n: int, images_per_patient: int | Sequence[int]) -> list[int]:
    """Patient number of each of ``n`` images: runs of ``images_per_patient`` (cycled when a sequence)."""
    counts = [images_per_patient] if isinstance(images_per_patient, int) else list(images_per_patient)
    if not counts or min(counts) < 1:
        raise ValueError(f"images_per_patient must be >= 1 (or a sequence of such), but got {images_per_patient!r}.")
    out: list[int] = []
    patient = 0
    while len(out) < n:
        out += [patient] * counts[patient % len(counts)]
        patient += 1
    return out[:n]


def make_dataset(
    root: Path,
    n: int = 12,
    size: Size = 48,
    *,
    rgb: bool = False,
    modes: Sequence[str] | None = None,
    patient_ids: bool = True,
    images_per_patient: int | Sequence[int] = 2,
    missing_patient_ids: Sequence[int] = (),
    columns: dict[str, str] | None = None,
    label_style: str = "int",
    labels: Sequence[int] | None = None,
    image_ids: bool = True,
    normal_masks: bool = True,
    seed: int = 0,
) -> FakeDataset:
    """Write a small VALID paper-format dataset into ``root``.

    - ``size``: one int (square), one (w, h), or a list of (w, h) cycled over the images.
    - ``rgb``/``modes``: PNG modes cycled over the images (L, I;16, RGB, RGBA; see ``write_png``).
    - patients: ``images_per_patient`` consecutive images share a patient and its label
      (labels cycle Benign, Malignant, Normal over patients unless ``labels`` gives one per image);
      a sequence, e.g. ``(1, 2, 3)``, is cycled over the patients (BUSI-like 1-3 images each).
    - ``patient_ids=False`` drops the column; ``missing_patient_ids`` blanks those rows (0-based).
    - ``columns``: canonical -> written column name (the renamed-columns case).
    - ``label_style``: "int" (0), "float" (0.0), "str" ("0") or "name" ("benign").
    - ``image_ids=False`` drops the image_id column (ids then default to file stems).
    - ``normal_masks=False`` leaves mask_path empty for Normal images instead of an empty mask.

    Image ids are the class initial and the row number ("b000", "m003", "n004"), so a test can
    name the image it breaks.
    """
    root = Path(root)
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must give one label per image (n={n}), but got {len(labels)}.")
    rng = np.random.default_rng(seed)
    sizes = _sizes(size)
    modes = list(modes or (["RGB"] if rgb else ["L"]))
    rows, images = [], []
    patient_of = _patients(n, images_per_patient)
    for i in range(n):
        patient = patient_of[i]
        label = int(labels[i]) if labels is not None else patient % 3
        w, h = sizes[i % len(sizes)]
        image, mask = ultrasound_image((h, w), label, rng)
        image_id = f"{CLASS_NAMES[label][0].lower()}{i:03d}"
        image_file = write_png(root / "images" / f"{image_id}.png", image, modes[i % len(modes)])
        mask_rel: str | None = f"masks/{image_id}_mask.png"
        if label != NORMAL or normal_masks:
            write_png(root / str(mask_rel), mask.astype(np.uint8) * 255)
        else:
            mask_rel = None
        has_pid = patient_ids and i not in missing_patient_ids
        images.append(FakeImage(image_id, label, image_file.resolve(),
                                (root / mask_rel).resolve() if mask_rel else None, mask,
                                f"P{patient:03d}" if has_pid else image_id))
        value: object = {"int": label, "float": float(label), "str": str(label),
                         "name": CLASS_NAMES[label].lower()}[label_style]
        row = {"image_id": image_id, "image_path": f"images/{image_id}.png", "mask_path": mask_rel, "label": value}
        if patient_ids:
            row["patient_id"] = None if i in missing_patient_ids else f"P{patient:03d}"
        row["label_name"] = CLASS_NAMES[label]
        if not image_ids:
            del row["image_id"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if columns:
        table = table.rename(columns=columns)
    table.to_excel(root / METADATA_FILE, index=False)
    return FakeDataset(root, tuple(images))


def make_patient_dataset(root: Path, patients: Sequence[int], labels: Sequence[int], size: int = 32) -> Path:
    """One image per entry of ``patients``/``labels``, the images of patient ``p`` sharing the id
    ``P<p>``: split and fold tests control exactly how many images each patient has."""
    make_dataset(root, n=len(patients), size=size, labels=list(labels), images_per_patient=1)
    table = pd.read_excel(root / "training_metadata.xlsx", dtype=object)
    table["patient_id"] = [f"P{int(p):02d}" for p in patients]
    table.to_excel(root / "training_metadata.xlsx", index=False)
    return root


def edit_metadata(root: Path, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Rewrite ``root/training_metadata.xlsx`` as ``fn(table)`` (cells read as objects, unparsed)."""
    path = Path(root) / METADATA_FILE
    table = pd.read_excel(path, dtype=object)
    fn(table).to_excel(path, index=False)


def box_mask(h: int, w: int, y: int, x: int, s: int = 6) -> np.ndarray:
    """An ``s`` x ``s`` square at (y, x) as a 0/255 uint8 mask: exact geometry for merge tests."""
    m = np.zeros((h, w), np.uint8)
    m[y : y + s, x : x + s] = 255
    return m


def make_busi(src: Path, per_class: int = 2, seed: int = 0) -> Path:
    """A BUSI-like tree in ``src``: benign/ malignant/ normal/ with "<class> (k).png" RGB images and
    "<class> (k)_mask.png" masks (Normal masks empty); "benign (2)" also has _mask_1 and _mask_2.

    Images are (w, h) = (50, 40 + k) and the lesion masks are :func:`box_mask` squares at (5, 5)
    (extra masks at (20, 30) and (30, 10)), so an import test can assert the merged mask exactly.
    """
    src = Path(src)
    rng = np.random.default_rng(seed)
    for label, folder in enumerate(name.lower() for name in CLASS_NAMES):
        for k in range(1, per_class + 1):
            h, w = 40 + k, 50
            stem = f"{folder} ({k})"
            mask = np.zeros((h, w), np.uint8) if label == NORMAL else box_mask(h, w, 5, 5)
            image, _ = ultrasound_image((h, w), label, rng, mask=mask > 0)
            write_png(src / folder / f"{stem}.png", image, "RGB")
            write_png(src / folder / f"{stem}_mask.png", mask, None if label == NORMAL else "RGB")
    if per_class >= 2:
        write_png(src / "benign" / "benign (2)_mask_1.png", box_mask(42, 50, 20, 30))
        write_png(src / "benign" / "benign (2)_mask_2.png", box_mask(42, 50, 30, 10))
    return src
