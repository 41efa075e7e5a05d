"""What one run shares between its stages: config, device, data, split, array caches, stage store."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import RunConfig
from harness.data.cache import ArrayCache, content_hash, load_cache
from harness.data.check import load_index
from harness.data.folds import get_or_create_folds
from harness.data.io import image_size, read_image, read_mask
from harness.data.records import DatasetIndex
from harness.data.splits import Split, get_or_create_split
from harness.engine.device import DeviceInfo
from harness.engine.fit import EpochCallback
from harness.engine.store import StageStore
from harness.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_DATA_ENV = "HARNESS_DATA"
DEFAULT_DATA_DIR = Path("data/synth")


def default_data_dir() -> Path:
    """``$HARNESS_DATA`` or ``./data/synth`` (where ``make demo`` writes the synthetic set)."""
    return Path(os.environ.get(DEFAULT_DATA_ENV, DEFAULT_DATA_DIR))


def resolve_data_dir(config: RunConfig, override: Path | None = None) -> Path:
    root = Path(override) if override else config.data.dir or default_data_dir()
    if not (root / "training_metadata.xlsx").exists() and not root.exists():
        hint = ("make one with `harness data synth data/synth` (or `make demo`), or pass --data DIR"
                if not (override or config.data.dir) else "check the path given with --data / data.dir")
        raise DataError(f"{root}: no dataset directory there; {hint}.")
    return root


@dataclass
class RunContext:
    """Per-run state shared by the stages; built once by :func:`prepare`."""

    config: RunConfig
    info: DeviceInfo
    store: StageStore
    index: DatasetIndex
    split: Split
    callbacks: Sequence[EpochCallback] = ()
    progress: bool = False
    _caches: dict[int, ArrayCache] = field(default_factory=dict)
    _content: str | None = None

    @property
    def data_key(self) -> dict[str, Any]:
        """What a stage's training data depends on: metadata, the train/val ids (so each cross-validation
        fold has its own key), the image and mask bytes, and the input channels. ``data.num_workers`` is
        not in it: augmentation does not depend on it (per-sample seeds, see ``harness.data.datasets``)."""
        ids = json.dumps({"train": list(self.split.train), "val": list(self.split.val)}).encode()
        return {"metadata": self.index.metadata_hash, "split": hashlib.sha256(ids).hexdigest()[:16],
                "content": self.content_hash, "channels": self.config.data.channels}

    @property
    def content_hash(self) -> str:
        """Hash of the dataset's image and mask bytes (computed once per version of the files)."""
        if self._content is None:
            self._content = content_hash(self.index, self.config.data.cache_dir)
        return self._content

    def arrays(self, size: int) -> ArrayCache:
        """Decoded images and masks at ``size`` (built once per dataset and size, then memory-mapped)."""
        if size not in self._caches:
            self._caches[size] = load_cache(self.index, size, self.config.data.cache_dir, progress=self.progress)
        return self._caches[size]

    def rows(self, size: int, ids: Sequence[str]) -> np.ndarray:
        cache = self.arrays(size)
        return np.array([cache.row(i) for i in ids], dtype=np.int64)

    def labels(self, ids: Sequence[str]) -> np.ndarray:
        by_id = self.index.by_id()
        return np.array([by_id[i].label for i in ids], dtype=np.int64)

    def subset(self, size: int, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, binary masks, labels) of ``ids`` at ``size``, in memory."""
        cache, rows = self.arrays(size), self.rows(size, ids)
        return np.asarray(cache.images[rows]), np.asarray(cache.masks[rows]), self.labels(ids)


    def original_image(self, image_id: str) -> np.ndarray:
        """The image at its original size, uint8 grey."""
        return read_image(self.index.image_file(self.index.by_id()[image_id]))

    def original_mask(self, image_id: str) -> np.ndarray:
        """The ground-truth mask at the original size (all False when the record has none)."""
        rec = self.index.by_id()[image_id]
        path = self.index.mask_file(rec)
        if path is None:
            h, w = self.original_shapes([image_id])[0]
            return np.zeros((h, w), dtype=bool)
        return read_mask(path)

    def original_shapes(self, ids: Sequence[str]) -> list[tuple[int, int]]:
        """(H, W) of each original image, read from the PNG headers only."""
        by_id = self.index.by_id()
        out = []
        for i in ids:
            w, h = image_size(self.index.image_file(by_id[i]))
            out.append((h, w))
        return out


def load_dataset(config: RunConfig, data_dir: Path | None = None, *,
                 check_data: bool = True) -> tuple[Path, DatasetIndex, Split]:
    """Resolve the dataset directory, load (and check) its index, and load or create the split.

    The one data-preparation path: a run's :func:`prepare` and a study driver (which creates the
    split once before its trials start) both call it, so they can never disagree on the split.
    An existing ``splits/<data.split>.json`` is used as written; with ``data.folds`` K > 1 the split
    is fold ``data.fold`` of the K cross-validation folds of its non-test part (:mod:`harness.data.folds`).
    Returns (dataset directory, index, split).
    """
    d = config.data
    root = resolve_data_dir(config, data_dir)
    index = load_index(root, d.columns or None, check=check_data)
    split = get_or_create_split(index, d.split, d.val_fraction, d.test_fraction, d.split_seed,
                                group_duplicates=d.group_duplicates)
    if d.folds > 1:
        split = get_or_create_folds(index, split, d.folds)[d.fold]
    overlap = set(split.train) & (set(split.val) | set(split.test))
    if overlap:  # load_split checks patients too; this guards the contract "never evaluate on training images"
        raise DataError(f"split {config.data.split}: {len(overlap)} images are both in train and val/test.")
    return root, index, split


def prepare(config: RunConfig, info: DeviceInfo, store_root: Path, *, data_dir: Path | None = None,
            callbacks: Sequence[EpochCallback] = (), progress: bool = False, check_data: bool = True) -> RunContext:
    """Check the dataset, load (or create and announce) the split, and set up the stage store.

    ``check_data=False`` skips the full dataset check (every mask decoded) when the caller already
    ran it, e.g. a study's trials after the driver checked once.
    """
    _, index, split = load_dataset(config, data_dir, check_data=check_data)
    return RunContext(config=config, info=info, store=StageStore(store_root), index=index, split=split,
                      callbacks=tuple(callbacks), progress=progress)
