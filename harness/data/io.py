"""File I/O of the dataset: PNG images and masks, the metadata workbook, path safety, safe writes.

Everything that touches a dataset file goes through here, so every failure becomes a
:class:`~harness.errors.DataError` that names the file. Input is opened defensively: regular
files only (a FIFO or ``/dev/zero`` is refused before it is read), with a size cap, and a PNG's
structure and declared size (:mod:`harness.data.png`) are verified before anything is decoded.
Writing (atomic, umask-honouring, free space checked up front, staged directories) is
:mod:`harness.data.output`; ``write_bytes_atomic`` is importable from here too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pandas as pd

from harness.data.output import write_bytes_atomic
from harness.data.png import PNG_SIGNATURE, PngError, PngHeader, parse_png, verify_png_data
from harness.data.workbook import read_sheet
from harness.errors import DataError

MAX_PNG_BYTES = 256 * 2**20
MAX_METADATA_BYTES = 64 * 2**20
MAX_TEXT_BYTES = 64 * 2**20
"""JSON/YAML artefacts (splits, cache sidecars, stage records)."""


class FileProblem(DataError):
    """A dataset file that cannot be used; ``reason`` is the bare problem, e.g. "truncated PNG"."""

    def __init__(self, path: Path | str, reason: str, todo: str):
        self.path = Path(path)
        self.reason = reason
        self.todo = todo
        super().__init__(f"{path}: {reason}; {todo}.")


class PathEscapeError(DataError):
    """A metadata path that would leave the dataset directory (never opened)."""


# ---------------------------------------------------------------------------------------------
# Paths


def normalize_rel(rel: str) -> str:
    """A metadata path in one spelling: forward slashes, no "./" ("./images\\a.png" -> "images/a.png")."""
    return posixpath.normpath(str(rel).strip().replace("\\", "/"))


def safe_join(root: Path, rel: str) -> Path:
    """Join a metadata path to the dataset directory, refusing anything that leaves it.

    Absolute paths, ``..`` components and symlinks that resolve outside ``root`` are refused
    before any file is opened, so a metadata file can never make the harness read elsewhere.
    """
    text = str(rel).strip().replace("\\", "/")
    if not text:
        raise PathEscapeError(f'empty path in {root}.')
    if text.startswith("/") or Path(text).is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise PathEscapeError(f'"{rel}" is an absolute path; paths must be relative to the dataset directory.')
    if ".." in Path(text).parts:
        raise PathEscapeError(f'"{rel}" leaves the dataset directory (".."); keep files inside it.')
    root_real = Path(os.path.realpath(root))
    full = Path(root) / text
    real = Path(os.path.realpath(full))
    if not real.is_relative_to(root_real):
        raise PathEscapeError(
            f'"{rel}" is a symlink that leads outside the dataset directory (to {real}); copy the file in instead.'
        )
    return full


# ---------------------------------------------------------------------------------------------
# Reading: regular files only, size-capped


def _os_problem(path: Path, e: OSError) -> FileProblem:
    if isinstance(e, FileNotFoundError):
        return FileProblem(path, "no such file", "fix the path in the metadata or add the file")
    if isinstance(e, IsADirectoryError):
        return FileProblem(path, "is a directory, not a file", "point it at a file")
    return FileProblem(path, f"cannot read ({e.strerror})", "check the file's permissions")


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: Path, limit: int | None = None) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is a regular file (of at most ``limit`` bytes).

    Opened non-blocking, so a FIFO cannot hang the open, and refused by ``fstat`` before any read
    when it is not a regular file (a FIFO, ``/dev/zero``, a socket), so nothing can stream forever.
    Raises :class:`FileProblem` (a DataError) naming the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        try:  # a socket cannot even be opened (ENXIO): say what it is
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise FileProblem(path, f"is {_file_kind(mode)}, not a regular file", "point it at a file") from None
        raise _os_problem(Path(path), e) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _os_problem(Path(path), IsADirectoryError(errno.EISDIR, "Is a directory"))
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(path, f"is {_file_kind(st.st_mode)}, not a regular file", "point it at a file")
        if limit is not None and st.st_size > limit:
            raise FileProblem(path, f"is {st.st_size / 2**20:.0f} MB, over the limit of {limit / 2**20:.0f} MB",
                              "use a smaller file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_regular(path: Path, limit: int, *, head: int | None = None) -> bytes:
    """The bytes of ``path`` (at most ``head`` of them) if it is a regular file of at most ``limit``
    bytes (:func:`open_regular`)."""
    with open_regular(path, limit) as f:
        try:
            data = f.read(limit + 1 if head is None else head)
        except OSError as e:
            raise _os_problem(Path(path), e) from None
    if len(data) > limit:
        raise FileProblem(path, f"grew over the limit of {limit / 2**20:.0f} MB while being read", "use a smaller file")
    return data


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """A small UTF-8 artefact (JSON split, sidecar, stage record) read with :func:`read_regular`."""
    data = read_regular(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileProblem(path, f"is not UTF-8 text (byte {e.start})", "restore or delete the file") from None


def _read_bytes(path: Path) -> bytes:
    data = read_regular(path, MAX_PNG_BYTES)
    if not data:
        raise FileProblem(path, "empty file (0 bytes)", "re-export the file")
    return data


# ---------------------------------------------------------------------------------------------
# PNG


def _png_problem(path: Path | str, e: PngError) -> FileProblem:
    return FileProblem(path, e.reason, e.todo)


def read_png_header(data: bytes, path: Path | str = "<bytes>", *, verify: bool = False) -> PngHeader:
    """The header of PNG ``data`` after :func:`~harness.data.png.parse_png` (chunks, CRCs, size limit);
    with ``verify`` also :func:`~harness.data.png.verify_png_data` (the image data inflates cleanly)."""
    try:
        return verify_png_data(data) if verify else parse_png(data)
    except PngError as e:
        raise _png_problem(path, e) from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header only (reads 24 bytes): fast size checks."""
    head = read_regular(path, MAX_PNG_BYTES, head=24)
    if not head:
        raise FileProblem(path, "empty file (0 bytes)", "re-export the file")
    if not head.startswith(PNG_SIGNATURE):
        raise FileProblem(path, "not a PNG file", "convert it to PNG")
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise FileProblem(path, "truncated PNG (no IHDR header)", "re-export the file")
    w, h = struct.unpack_from(">II", head, 16)
    return int(w), int(h)


def inspect_png(path: Path, *, verify: bool = False) -> PngHeader:
    """Read the whole file and verify its structure (and with ``verify`` its image data) without decoding."""
    return read_png_header(_read_bytes(path), path, verify=verify)


def load_png(path: Path, *, mask: bool = False, verify: bool = False) -> tuple[PngHeader, np.ndarray]:
    """(header, pixels) of one PNG, read once: HxW uint8 gray for an image, HxW bool for a mask.

    The header (and its size limit) is checked before the decoder allocates anything. With
    ``verify`` the image data is inflated and checked first (:func:`read_png_header`), which is what
    ``data check`` does so that a damaged file is named precisely and never reaches libpng. An image
    is decoded as gray (16-bit scaled by 1/256, RGB(A) by luma, alpha dropped); a mask is lesion
    wherever any colour channel is > 0 (alpha is ignored).
    """
    data = _read_bytes(path)
    header = read_png_header(data, path, verify=verify)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED if mask else cv2.IMREAD_GRAYSCALE)
    except cv2.error as e:
        raise FileProblem(path, f"PNG data cannot be decoded ({' '.join(str(e).split())[:160]})",
                          "re-export the file") from None
    if arr is None:
        if not verify:  # say what is wrong when the structure can tell
            read_png_header(data, path, verify=True)
        raise FileProblem(path, "PNG data cannot be decoded", "re-export the file")
    if arr.shape[:2] != (header.height, header.width):  # pragma: no cover - a decoder bug, not a file defect
        raise FileProblem(path, f"decoded to {arr.shape[1]}x{arr.shape[0]}, but its header says "
                                f"{header.width}x{header.height}", "re-export the file")
    if mask:
        channels = arr[..., :3].max(axis=2) if arr.ndim == 3 else arr
        return header, np.asarray(channels > 0)
    return header, arr


def read_image(path: Path, root: Path | None = None) -> np.ndarray:
    """Decode a PNG as HxW uint8 gray (16-bit scaled by 1/256, RGB(A) by luma, alpha dropped).

    With ``root``, ``path`` is a metadata path made safe by :func:`safe_join` first.
    """
    path = safe_join(root, str(path)) if root is not None else Path(path)
    return load_png(path)[1]


def read_mask(path: Path, root: Path | None = None) -> np.ndarray:
    """Decode a mask PNG as HxW bool: any colour channel > 0 is lesion (alpha is ignored)."""
    path = safe_join(root, str(path)) if root is not None else Path(path)
    return load_png(path, mask=True)[1]


# ---------------------------------------------------------------------------------------------
# Writing (the helpers live in harness.data.output)


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Write a boolean mask as an 8-bit 0/255 PNG (atomically: temp file + rename)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"{path}: a mask must be 2-D (HxW), but got shape {mask.shape}.")
    ok, buf = cv2.imencode(".png", np.where(mask > 0, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - cv2 encodes any 2-D uint8 array
        raise DataError(f"{path}: could not encode the mask as PNG.")
    write_bytes_atomic(Path(path), buf.tobytes())


# ---------------------------------------------------------------------------------------------
# Metadata workbook


def read_metadata(path: Path) -> tuple[pd.DataFrame, bytes]:
    """Read the metadata workbook's first sheet as strings/numbers; return (table, raw bytes).

    The raw bytes are returned so the caller can hash exactly what was parsed (read once). The
    table's index is the Excel row number - 2 (see :func:`harness.data.workbook.read_sheet`).
    """
    name = Path(path).name
    if not os.path.lexists(path):
        raise DataError(
            f"{name}: not found in {Path(path).parent}; a dataset needs images/, masks/ and "
            f"{name} (see docs/data.md)."
        )
    try:
        data = read_regular(Path(path), MAX_METADATA_BYTES)
    except FileProblem as e:
        todo = ("check the file's permissions" if e.reason.startswith("cannot read") else
                e.todo if "limit" in e.reason else f"make {name} a regular .xlsx file")
        raise DataError(f"{name}: {e.reason}; {todo}.") from None
    if not data:
        raise DataError(f"{name}: file is empty (0 bytes); re-export the metadata from Excel as .xlsx.")
    if not data.startswith(b"PK"):
        raise DataError(f"{name}: not an Excel .xlsx file; save the metadata as .xlsx (Excel 2007+ workbook).")
    table = read_sheet(data, name)
    return table, data
