"""Shared fixtures: small valid paper-format datasets written with PIL + pandas.

The datasets here never use ``harness.data.synth`` so that data-layer tests do not depend on the
generator. Use the factory for anything unusual::

    def test_x(make_dataset, tmp_path):
        root = make_dataset(tmp_path / "ds", n=9, size=[(40, 32), (64, 48)], modes=("RGB", "RGBA"))

The factories are session-scoped fixtures (pure functions), so module-scoped fixtures can use them
too. Request them as fixtures rather than ``from conftest import ...``: every conftest.py in this
tree is imported under the module name ``conftest``, so that import finds whichever came last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

CANONICAL = ("image_id", "image_path", "mask_path", "label", "patient_id", "label_name")
NAMES = ("Benign", "Malignant", "Normal")


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` as PNG; ``mode`` one of L, I;16, RGB, RGBA, 1 (inferred when None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if mode == "1":
        Image.fromarray(arr.astype(bool)).save(path)
        return path
    if mode == "I;16":
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr.astype(np.uint16)
        Image.fromarray(arr).save(path)
        return path
    if mode in ("RGB", "RGBA") and arr.ndim == 2:
        chans = [arr, np.clip(arr.astype(int) * 0.9, 0, 255).astype(np.uint8), arr]
        if mode == "RGBA":
            chans.append(np.full_like(arr, 255))
        arr = np.dstack(chans)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random tissue-like field + speckle, so different images differ in coarse structure."""
    coarse = Image.fromarray(rng.normal(0, 30, (6, 6)).astype(np.float32), mode="F")
    smooth = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC))
    return 80 + smooth + rng.normal(0, 8, (h, w))


def _lesion(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    ry, rx = rng.uniform(0.12, 0.25) * h, rng.uniform(0.12, 0.25) * w
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_dataset_files(
    root: Path,
    n: int = 12,
    size: int | tuple[int, int] | Sequence[tuple[int, int]] = 48,
    *,
    rgb: bool = False,
    modes: Sequence[str] | None = None,
    patient_ids: bool = True,
    images_per_patient: int = 2,
    missing_patient_ids: Sequence[int] = (),
    columns: dict[str, str] | None = None,
    label_style: str = "int",
    labels: Sequence[int] | None = None,
    image_ids: bool = True,
    normal_masks: bool = True,
    seed: int = 0,
) -> Path:
    """Write a small VALID paper-format dataset into ``root`` and return ``root``.

    - ``size``: one int (square), one (w, h), or a list of (w, h) cycled over the images.
    - ``rgb``/``modes``: image pixel formats cycled over the images (L, I;16, RGB, RGBA).
    - patients: ``images_per_patient`` consecutive images share a patient and its label
      (labels cycle Benign, Malignant, Normal over patients unless ``labels`` gives one per image).
    - ``patient_ids=False`` drops the column; ``missing_patient_ids`` blanks those rows (0-based).
    - ``columns``: canonical -> written column name (the renamed-columns case).
    - ``label_style``: "int" (0), "float" (0.0), "str" ("0") or "name" ("benign").
    - ``normal_masks=False`` leaves mask_path empty for Normal images instead of an empty mask.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    sizes = [(size, size)] if isinstance(size, int) else [tuple(size)] if isinstance(size[0], int) else list(size)
    modes = list(modes or (["RGB"] if rgb else ["L"]))
    rows = []
    for i in range(n):
        patient = i // images_per_patient
        label = labels[i] if labels is not None else patient % 3
        w, h = sizes[i % len(sizes)]
        image = _background(h, w, rng)
        mask = _lesion(h, w, rng) if label != 2 else np.zeros((h, w), bool)
        image[mask] += 60 if label == 0 else -30
        image_id = f"{NAMES[label][0].lower()}{i:03d}"
        write_png(root / "images" / f"{image_id}.png", np.clip(image, 0, 255).astype(np.uint8), modes[i % len(modes)])
        mask_path = f"masks/{image_id}_mask.png"
        if label != 2 or normal_masks:
            write_png(root / mask_path, mask.astype(np.uint8) * 255)
        else:
            mask_path = None
        value: object = {"int": label, "float": float(label), "str": str(label), "name": NAMES[label].lower()}[label_style]
        row = {"image_id": image_id, "image_path": f"images/{image_id}.png", "mask_path": mask_path, "label": value}
        if patient_ids:
            row["patient_id"] = None if i in missing_patient_ids else f"P{patient:03d}"
        row["label_name"] = NAMES[label]
        if not image_ids:
            del row["image_id"]
        rows.append(row)
    table = pd.DataFrame(rows)
    if columns:
        table = table.rename(columns=columns)
    table.to_excel(root / "training_metadata.xlsx", index=False)
    return root


def _box(h: int, w: int, y: int, x: int, s: int = 6) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y : y + s, x : x + s] = 255
    return m


def make_busi_files(src: Path, per_class: int = 2, seed: int = 0) -> Path:
    """A BUSI-like tree in ``src``: benign/ malignant/ normal/ with "<class> (k).png" RGB images and
    "<class> (k)_mask.png" masks (Normal masks empty); "benign (2)" also has _mask_1 and _mask_2."""
    src = Path(src)
    rng = np.random.default_rng(seed)
    for folder in ("benign", "malignant", "normal"):
        for k in range(1, per_class + 1):
            h, w = 40 + k, 50
            stem = f"{folder} ({k})"
            write_png(src / folder / f"{stem}.png", rng.integers(0, 255, (h, w), dtype=np.uint8), "RGB")
            mask = np.zeros((h, w), np.uint8) if folder == "normal" else _box(h, w, 5, 5)
            write_png(src / folder / f"{stem}_mask.png", mask, None if folder == "normal" else "RGB")
    if per_class >= 2:
        write_png(src / "benign" / "benign (2)_mask_1.png", _box(42, 50, 20, 30))
        write_png(src / "benign" / "benign (2)_mask_2.png", _box(42, 50, 30, 10))
    return src


@pytest.fixture(scope="session")
def make_busi() -> Callable[..., Path]:
    """Factory ``make_busi(src, per_class=2)``; see :func:`make_busi_files`."""
    return make_busi_files


@pytest.fixture(scope="session")
def make_dataset() -> Callable[..., Path]:
    """Factory ``make_dataset(root, n=12, size=48, rgb=False, ...)``; see :func:`make_dataset_files`."""
    return make_dataset_files


@pytest.fixture(name="write_png", scope="session")
def write_png_fixture() -> Callable[..., Path]:
    """``write_png(path, array, mode=None)``: write any test image as PNG."""
    return write_png


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A default 12-image, 48 px gray dataset with 6 patients (2 per class)."""
    return make_dataset_files(tmp_path / "ds")


@pytest.fixture(scope="session")
def edit_metadata() -> Callable[..., None]:
    """``edit_metadata(root, fn)``: rewrite training_metadata.xlsx with ``fn(table) -> table``."""

    def edit(root: Path, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        path = Path(root) / "training_metadata.xlsx"
        table = pd.read_excel(path, dtype=object)
        fn(table).to_excel(path, index=False)

    return edit


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests run in parallel on 2 cores: one intra-op thread per worker is steadier."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)
