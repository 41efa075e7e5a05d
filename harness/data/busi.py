"""Convert the public BUSI layout (Al-Dhabyani et al. 2020) into the paper's dataset format.

BUSI ships ``benign/``, ``malignant/`` and ``normal/`` folders with ``benign (12).png``, its mask
``benign (12)_mask.png`` and sometimes extra masks ``benign (12)_mask_1.png`` (several lesions),
which are merged by logical OR. BUSI has no patient ids: each image becomes its own patient, and
`harness data split --group-duplicates` is the recommended guard against its near-duplicates.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.data.io import FileProblem, image_size, inspect_png, read_mask, write_mask
from harness.data.output import require_free_space, staged_output
from harness.data.records import METADATA_FILE
from harness.errors import DataError

logger = logging.getLogger(__name__)

FOLDERS = {"benign": 0, "malignant": 1, "normal": 2}
_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(?P<cls>[a-z]+)\s*\((?P<n>\d+)\)$", re.IGNORECASE)


@dataclass
class BusiImage:
    """One BUSI image and its mask files, relative to the source directory."""

    image_id: str
    label: int
    image: Path
    masks: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class BusiSummary:
    """What :func:`import_busi` wrote."""

    out: Path
    classes: dict[str, int]
    extra_masks_merged: int
    seconds: float

    @property
    def images(self) -> int:
        return sum(self.classes.values())

    def format(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.classes.items())
        return (
            f"imported {self.images} images ({counts}) into {self.out} in {self.seconds:.1f} s; "
            f"{self.extra_masks_merged} extra mask file(s) merged by logical OR."
        )


def _clean_id(folder: str, stem: str) -> str:
    m = _NUMBERED.match(stem.strip())
    if m and m.group("cls").lower() == folder:
        return f"{folder}_{int(m.group('n')):03d}"
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or folder


def _source_root(src: Path) -> Path:
    """``src`` itself, or its single subfolder when BUSI was unpacked as Dataset_BUSI_with_GT/."""
    names = {p.name.lower() for p in src.iterdir() if p.is_dir()}
    if names & set(FOLDERS):
        return src
    subdirs = [p for p in src.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and {p.name.lower() for p in subdirs[0].iterdir() if p.is_dir()} & set(FOLDERS):
        logger.info("using %s (the BUSI folders are one level down)", subdirs[0])
        return subdirs[0]
    return src


def scan_busi(src: Path) -> list[BusiImage]:
    """List images and their masks per class folder; every layout problem raised together."""
    try:
        return _scan(Path(src))
    except OSError as e:
        raise DataError(f"{e.filename or src}: cannot list it ({e.strerror}); check its permissions.") from None


def _scan(src: Path) -> list[BusiImage]:
    if not src.is_dir():
        raise DataError(f"{src}: no such directory; give the BUSI folder that holds benign/, malignant/ and normal/.")
    src = _source_root(src)
    folders = {p.name.lower(): p for p in src.iterdir() if p.is_dir()}
    errors: list[str] = []
    images: list[BusiImage] = []
    for folder, label in FOLDERS.items():
        if folder not in folders:
            errors.append(f"{src / folder}/: folder missing; BUSI needs benign/, malignant/ and normal/ "
                          "(an empty folder is fine).")
            continue
        found: dict[str, BusiImage] = {}
        masks: list[tuple[str, int, Path]] = []
        for path in sorted(folders[folder].iterdir()):
            if path.suffix.lower() != ".png":
                continue
            m = _MASK.match(path.stem)
            if m:
                masks.append((m.group("stem"), int(m.group("k") or 0), path))
            else:
                found[path.stem] = BusiImage(_clean_id(folder, path.stem), label, path)
        for stem, _, path in sorted(masks, key=lambda t: (t[0], t[1])):
            if stem in found:
                found[stem].masks.append(path)
            else:
                logger.warning("%s: mask without an image (%s.png); skipped.", path, stem)
        for item in found.values():
            if not item.masks:
                errors.append(
                    f"{item.image}: no mask (expected {item.image.with_name(item.image.stem + '_mask.png').name}); "
                    "add the mask or remove the image."
                )
        images.extend(sorted(found.values(), key=lambda b: b.image_id))
    seen: dict[str, Path] = {}
    for item in images:
        if item.image_id in seen:
            errors.append(f"{item.image}: its id {item.image_id} clashes with {seen[item.image_id]}; "
                          "rename one of them.")
        seen[item.image_id] = item.image
    if errors:
        raise DataError(errors)
    if not images:
        raise DataError(f"{src}: no PNG images in benign/, malignant/ or normal/.")
    return images


def _check_sizes(item: BusiImage) -> list[str]:
    try:
        inspect_png(item.image)
        size = image_size(item.image)
        problems = []
        for m in item.masks:
            inspect_png(m)
            if image_size(m) != size:
                w, h = image_size(m)
                problems.append(f"{m}: size {w}x{h} differs from its image {item.image.name} "
                                f"({size[0]}x{size[1]}); fix or remove the mask.")
        return problems
    except FileProblem as e:
        return [str(e.problems[0])]


def _convert(item: BusiImage, out: Path) -> None:
    shutil.copyfile(item.image, out / "images" / f"{item.image_id}.png")
    mask = np.logical_or.reduce([read_mask(m) for m in item.masks])
    write_mask(out / "masks" / f"{item.image_id}_mask.png", mask)


def import_busi(src: Path, out: Path, *, workers: int = 2) -> BusiSummary:
    """Write BUSI as ``out/images``, ``out/masks`` and ``out/training_metadata.xlsx`` (paper format).

    Everything is verified (and the free disk space compared with what the import needs) before
    anything is written, and the output appears only when complete (built in a staging directory
    inside ``out``, then moved in, the metadata last), so a failed import leaves no half dataset.
    ``out`` may be new, empty, ``.`` or a symlink to an empty directory.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise DataError(f"{out}: is a symlink to a missing directory; give a new or empty output directory.")
    try:
        occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as e:
        raise DataError(f"{out}: cannot list it ({e.strerror}); give a new or empty output directory.") from None
    if occupied:
        raise DataError(f"{out}: already exists and is not empty; give a new or empty output directory.")
    items = scan_busi(Path(src))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = [p for ps in pool.map(_check_sizes, items) for p in ps]
    if problems:
        raise DataError(problems)
    need = sum(it.image.stat().st_size + sum(m.stat().st_size for m in it.masks) for it in items) + 2**20
    require_free_space(out, need, f"the imported dataset ({len(items)} images)",
                       "free space there or choose an output directory on another disk")
    with staged_output(out, last=(METADATA_FILE,)) as stage:
        (stage / "images").mkdir()
        (stage / "masks").mkdir()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(lambda item: _convert(item, stage), items))
        rows = [
            {
                "image_id": it.image_id,
                "image_path": f"images/{it.image_id}.png",
                "mask_path": f"masks/{it.image_id}_mask.png",
                "label": it.label,
                "label_name": CLASS_NAMES[it.label],
                "patient_id": it.image_id,
                "source": str(it.image.relative_to(Path(src))),
            }
            for it in items
        ]
        pd.DataFrame(rows).to_excel(stage / METADATA_FILE, index=False)
    logger.warning(
        "BUSI has no patient ids: patient_id is set to the image id, so a patient-wise split cannot be "
        "guaranteed; split with `harness data split %s --group-duplicates` to keep near-duplicate images together.",
        out,
    )
    classes = {name: sum(it.label == k for it in items) for k, name in enumerate(CLASS_NAMES)}
    extra = sum(len(it.masks) - 1 for it in items)
    return BusiSummary(out, classes, extra, time.perf_counter() - t0)
