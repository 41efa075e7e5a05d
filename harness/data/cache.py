"""Decoded, resized images and masks cached once per (metadata hash, image ids, size) as .npy memmaps.

Decoding PNGs every epoch dominates small-model training on CPU; the cache turns an epoch's input
into memory-mapped reads. A cache is never trusted blindly: a sidecar JSON records shapes, dtypes,
CRC32 checksums and a fingerprint (size, mtime) of the source files, and anything that does not
match is rebuilt with a log line. Builds are atomic (temp files + ``os.replace``) under a file lock,
so concurrent trials building the same cache wait for one another instead of corrupting it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from harness.data.io import open_regular, read_image, read_mask, read_text
from harness.data.output import output_problem, require_free_space, write_bytes_atomic
from harness.data.records import DatasetIndex, Record
from harness.errors import DataError, OutputError

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
PROGRESS_MIN_IMAGES = 200  # below this a bar is just noise


@dataclass(frozen=True)
class ArrayCache:
    """Read-only (N, size, size) uint8 arrays in ``index.records`` order; copy a row before editing it."""

    images: np.ndarray  # gray uint8
    masks: np.ndarray  # uint8 {0, 1}
    ids: tuple[str, ...]
    size: int
    images_path: Path
    masks_path: Path

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.ids)}

    def row(self, image_id: str) -> int:
        try:
            return self._rows[image_id]
        except KeyError:
            raise DataError(f'image id "{image_id}" is not in the cache {self.images_path.name}; '
                            "rebuild it from the same dataset index.") from None

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers re-open the memmaps instead of pickling hundreds of MB.
        return (_open, (self.images_path, self.masks_path, self.ids, self.size))


def _open(images_path: Path, masks_path: Path, ids: tuple[str, ...], size: int) -> ArrayCache:
    images, masks = np.load(images_path, mmap_mode="r"), np.load(masks_path, mmap_mode="r")
    return ArrayCache(images, masks, ids, size, images_path, masks_path)


# ---------------------------------------------------------------------------------------------
# Pure resizing (also what "decode every epoch" does)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize of a uint8 image: INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    shrink = h >= size and w >= size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Square nearest-neighbour resize of a binary mask -> uint8 {0, 1}."""
    m: np.ndarray = np.asarray(mask).astype(np.uint8)
    if m.shape[:2] != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST)
    return (m > 0).astype(np.uint8)


def load_resized(index: DatasetIndex, record: Record, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize one record's image and mask (an absent mask is all zeros)."""
    image = resize_image(read_image(index.image_file(record)), size)
    mask_file = index.mask_file(record)
    mask = resize_mask(read_mask(mask_file), size) if mask_file is not None else np.zeros((size, size), np.uint8)
    return image, mask


# ---------------------------------------------------------------------------------------------
# Files


def _checksum(arr: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(arr).data.cast('B')):08x}"


def _fingerprint(index: DatasetIndex) -> str:
    """Cheap digest of the source files' sizes and mtimes: catches images replaced in place."""
    h = hashlib.sha256()
    for r in index.records:
        for f in (index.image_file(r), index.mask_file(r)):
            if f is None:
                h.update(b"-")
                continue
            try:
                st = f.stat()
                h.update(f"{r.image_id}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(b"?")
    return h.hexdigest()[:16]


def dataset_stem(index: DatasetIndex) -> str:
    """``<metadata hash>-<ids hash>``: names every cached file of one dataset version."""
    ids = hashlib.sha256("\n".join(index.ids()).encode()).hexdigest()[:8]
    return f"{index.metadata_hash}-{ids}"


def cache_stem(index: DatasetIndex, size: int) -> str:
    return f"{dataset_stem(index)}-{size}px"


def _paths(directory: Path, stem: str) -> tuple[Path, Path, Path]:
    return directory / f"{stem}.images.npy", directory / f"{stem}.masks.npy", directory / f"{stem}.json"


def _try_open(
    directory: Path, stem: str, index: DatasetIndex, size: int, fingerprint: str
) -> tuple[ArrayCache | None, str]:
    """Open and fully verify a cache; (None, reason) when it is absent or not trustworthy."""
    images_path, masks_path, meta_path = _paths(directory, stem)
    if not meta_path.exists():
        return None, "absent"
    shape = (len(index), size, size)
    try:
        meta = json.loads(read_text(meta_path))
        for path in (images_path, masks_path):  # np.load would block on a FIFO
            if not stat.S_ISREG(os.stat(path).st_mode):
                return None, f"{path.name} is not a regular file"
        if meta.get("version") != CACHE_VERSION:
            return None, f"cache version {meta.get('version')} != {CACHE_VERSION}"
        if meta.get("fingerprint") != fingerprint:
            return None, "source images or masks changed since it was built"
        cache = _open(images_path, masks_path, tuple(index.ids()), size)
        for name, arr in (("images", cache.images), ("masks", cache.masks)):
            if arr.shape != shape or arr.dtype != np.uint8:
                return None, f"{name} array is {arr.shape} {arr.dtype}, expected {shape} uint8"
            if _checksum(arr) != meta[name]["checksum"]:
                return None, f"{name} checksum mismatch (file damaged)"
    except FileNotFoundError as e:
        return None, f"missing file {Path(e.filename or '').name}"
    except DataError as e:
        return None, f"unreadable ({e.problems[0]})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        return None, f"unreadable ({type(e).__name__}: {e})"
    return cache, "ok"


def _file_digest(path: Path | None) -> str:
    if path is None:
        return "-"
    h = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hash(index: DatasetIndex, cache_dir: Path | None = None) -> str:
    """16-hex hash of the bytes of every image and mask of ``index`` (in record order).

    What a trained stage was trained on, beyond the metadata: an image replaced under an unchanged
    workbook changes it. Hashing ~250 MB costs about a second, so the value is kept next to the
    decoded-image caches (``<stem>.content.json``) with the size+mtime fingerprint it belongs to, and
    computed again only when that fingerprint changes; a run otherwise pays one ``stat`` per file.
    """
    directory = Path(cache_dir) if cache_dir is not None else Path(index.root) / ".cache"
    sidecar = directory / f"{dataset_stem(index)}.content.json"
    fingerprint = _fingerprint(index)
    try:
        saved = json.loads(read_text(sidecar))
        if saved.get("fingerprint") == fingerprint and isinstance(saved.get("content"), str):
            return str(saved["content"])
    except (DataError, ValueError, AttributeError, RecursionError):
        pass
    files = [f for r in index.records for f in (index.image_file(r), index.mask_file(r))]
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = list(pool.map(_file_digest, files))
    except OSError as e:
        raise DataError(f"{e.filename}: cannot read it to hash the dataset's content ({e.strerror}).") from None
    content = hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
    logger.info("hashed %d image and mask files in %.1f s (content %s)", len(files), time.perf_counter() - t0,
                content)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(sidecar, (json.dumps({"fingerprint": fingerprint, "content": content}) + "\n").encode())
    except (OSError, OutputError) as e:  # a read-only cache directory only costs the hashing again next time
        logger.warning("%s: cannot save the content hash (%s)", sidecar, getattr(e, "strerror", None) or e)
    return content


def _lock(path: Path) -> contextlib.AbstractContextManager[Any]:
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with torch; os.replace keeps files whole anyway
        return contextlib.nullcontext()
    return FileLock(str(path), timeout=3600)


def _decoded(index: DatasetIndex, size: int, progress: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every record's (image, mask) at ``size``, in record order, decoded a bounded batch at a time on a few
    threads (so memory stays at one batch however large the dataset)."""
    bar = None
    if progress and len(index) >= PROGRESS_MIN_IMAGES:
        from tqdm import tqdm

        bar = tqdm(total=len(index), desc=f"caching {size}px", unit="img")
    batch = 64
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(index), batch):
            records = index.records[start : start + batch]
            for pair in pool.map(lambda r: load_resized(index, r, size), records):
                yield pair
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()


def _write_npy_header(f: BinaryIO, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})


def cache_bytes(n: int, size: int) -> int:
    """Disk space of a cache of ``n`` images at ``size`` px: two uint8 arrays plus headers and the sidecar."""
    return 2 * n * size * size + 16 * 1024


def _build(directory: Path, stem: str, index: DatasetIndex, size: int, fingerprint: str, progress: bool) -> None:
    """Write the two arrays by plain sequential writes to temp files, then rename them into place.

    Not through a writable memory map: on a full disk a memory-mapped write kills the process with
    SIGBUS, while a ``write`` fails with ENOSPC, which becomes one line. Free space is checked first.
    """
    images_path, masks_path, meta_path = _paths(directory, stem)
    tag = uuid.uuid4().hex[:8]
    tmp_images = directory / f".{stem}.images.{tag}.tmp.npy"
    tmp_masks = directory / f".{stem}.masks.{tag}.tmp.npy"
    shape = (len(index), size, size)
    require_free_space(directory, cache_bytes(len(index), size), f"the {size} px image cache of {len(index)} images",
                       "free space there or set data.cache_dir to a directory on another disk")
    t0 = time.perf_counter()
    try:
        with open(tmp_images, "xb") as fi, open(tmp_masks, "xb") as fm:
            _write_npy_header(fi, shape)
            _write_npy_header(fm, shape)
            crc_images = crc_masks = 0
            for image, mask in _decoded(index, size, progress):
                image, mask = np.ascontiguousarray(image, np.uint8), np.ascontiguousarray(mask, np.uint8)
                fi.write(image.data)
                fm.write(mask.data)
                crc_images, crc_masks = zlib.crc32(image.data, crc_images), zlib.crc32(mask.data, crc_masks)
        meta = {
            "version": CACHE_VERSION,
            "metadata_hash": index.metadata_hash,
            "size": size,
            "n": len(index),
            "fingerprint": fingerprint,
            "images": {"shape": list(shape), "dtype": "uint8", "checksum": f"{crc_images:08x}"},
            "masks": {"shape": list(shape), "dtype": "uint8", "checksum": f"{crc_masks:08x}"},
        }
        os.replace(tmp_images, images_path)
        os.replace(tmp_masks, masks_path)
        write_bytes_atomic(meta_path, (json.dumps(meta, indent=1) + "\n").encode())
    except OSError as e:
        raise output_problem(directory, e, f"cannot write the {size} px image cache") from None
    finally:
        tmp_images.unlink(missing_ok=True)
        tmp_masks.unlink(missing_ok=True)
    logger.info("cached %d images at %d px in %.1f s: %s", len(index), size, time.perf_counter() - t0, images_path)


def load_cache(index: DatasetIndex, size: int, cache_dir: Path | None = None, progress: bool = False) -> ArrayCache:
    """Memory-mapped decoded+resized images and masks of ``index``, built on first use.

    Stored under ``cache_dir`` (default ``root/.cache``) as ``<hash>-<ids>-<size>px.{images,masks}.npy``
    plus a JSON sidecar. A missing, truncated or damaged cache is rebuilt, never trusted.
    """
    if size < 1:
        raise DataError(f"cache size must be >= 1 px, but got size={size}.")
    directory = Path(cache_dir) if cache_dir is not None else Path(index.root) / ".cache"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{directory}: cannot create the cache directory ({e.strerror}); pass another cache_dir.") from None
    stem = cache_stem(index, size)
    fingerprint = _fingerprint(index)
    cache, reason = _try_open(directory, stem, index, size, fingerprint)
    if cache is not None:
        return cache
    with _lock(directory / f"{stem}.lock"):
        cache, reason = _try_open(directory, stem, index, size, fingerprint)  # another process may have built it
        if cache is not None:
            return cache
        if reason == "absent":
            logger.info("building the image cache for %d images at %d px in %s", len(index), size, directory)
        else:
            logger.warning("image cache %s is not usable (%s); rebuilding it.", stem, reason)
        _build(directory, stem, index, size, fingerprint, progress)
        cache, reason = _try_open(directory, stem, index, size, fingerprint)
    if cache is None:  # pragma: no cover - only if the disk changes under us
        raise DataError(f"{directory}: the image cache {stem} could not be verified after building ({reason}); "
                        "delete the directory and retry.")
    return cache
