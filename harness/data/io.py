"""File I/O of the dataset: PNG images and masks, the metadata workbook, and path safety.

Everything that touches a dataset file goes through here, so every failure becomes a
:class:`~harness.errors.DataError` that names the file. PNG structure (signature, chunk lengths,
CRCs, IEND) is verified before decoding, which is how truncated or bit-flipped files are named
precisely instead of surfacing as an OpenCV warning or a black image.
"""

from __future__ import annotations

import io
import os
import posixpath
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


class FileProblem(DataError):
    """A dataset file that cannot be used; ``reason`` is the bare problem, e.g. "truncated PNG"."""

    def __init__(self, path: Path | str, reason: str, todo: str):
        self.path = Path(path)
        self.reason = reason
        self.todo = todo
        super().__init__(f"{path}: {reason}; {todo}.")


class PathEscapeError(DataError):
    """A metadata path that would leave the dataset directory (never opened)."""


@dataclass(frozen=True)
class PngHeader:
    """What the IHDR chunk says: enough for size checks without decoding pixels."""

    width: int
    height: int
    bit_depth: int
    color_type: int

    @property
    def kind(self) -> str:
        """Readable pixel format, e.g. "gray8", "gray16", "RGB8", "RGBA8"."""
        return f"{COLOR_TYPES.get(self.color_type, '?')}{self.bit_depth}"


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
# PNG


def _os_problem(path: Path, e: OSError) -> FileProblem:
    if isinstance(e, FileNotFoundError):
        return FileProblem(path, "no such file", "fix the path in the metadata or add the file")
    if isinstance(e, IsADirectoryError):
        return FileProblem(path, "is a directory, not a PNG file", "point the metadata at a .png file")
    return FileProblem(path, f"cannot read ({e.strerror})", "check the file's permissions")


def _read_bytes(path: Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise _os_problem(path, e) from None
    if not data:
        raise FileProblem(path, "empty file (0 bytes)", "re-export the file")
    return data


def parse_png(data: bytes, path: Path | str = "<bytes>") -> PngHeader:
    """Verify a PNG's structure (signature, chunk CRCs, IEND present) and return its header."""
    if not data:
        raise FileProblem(path, "empty file (0 bytes)", "re-export the file")
    if not data.startswith(PNG_SIGNATURE):
        raise FileProblem(path, "not a PNG file", "convert it to PNG")
    pos, header, n = len(PNG_SIGNATURE), None, len(data)
    while True:
        if pos + 8 > n:
            raise FileProblem(path, "truncated PNG (no IEND chunk)", "re-export the file")
        length, raw_type = _CHUNK.unpack_from(data, pos)
        ctype = raw_type.decode("latin-1")
        end = pos + 8 + length + 4
        if end > n:
            raise FileProblem(path, f"truncated PNG ({n} bytes, chunk {ctype} runs past the end)", "re-export the file")
        body = data[pos + 4 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(body) != crc:
            raise FileProblem(path, f"corrupt PNG (bad CRC in chunk {ctype})", "re-export the file")
        if header is None:
            if ctype != "IHDR" or length != _IHDR.size:
                raise FileProblem(path, "corrupt PNG (first chunk is not IHDR)", "re-export the file")
            w, h, depth, color, *_ = _IHDR.unpack_from(data, pos + 8)
            header = PngHeader(w, h, depth, color)
        if ctype == "IEND":
            return header
        pos = end


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header only (reads 24 bytes): fast size checks."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise _os_problem(path, e) from None
    if not head:
        raise FileProblem(path, "empty file (0 bytes)", "re-export the file")
    if not head.startswith(PNG_SIGNATURE):
        raise FileProblem(path, "not a PNG file", "convert it to PNG")
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise FileProblem(path, "truncated PNG (no IHDR header)", "re-export the file")
    w, h = struct.unpack_from(">II", head, 16)
    return int(w), int(h)


def inspect_png(path: Path) -> PngHeader:
    """Read the whole file and verify its structure without decoding pixels."""
    return parse_png(_read_bytes(path), path)


def _decode(path: Path, flags: int) -> np.ndarray:
    data = _read_bytes(path)
    parse_png(data, path)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None:
        raise FileProblem(path, "PNG data cannot be decoded", "re-export the file")
    return arr


def read_image(path: Path, root: Path | None = None) -> np.ndarray:
    """Decode a PNG as HxW uint8 gray (16-bit scaled by 1/256, RGB(A) by luma, alpha dropped).

    With ``root``, ``path`` is a metadata path made safe by :func:`safe_join` first.
    """
    path = safe_join(root, str(path)) if root is not None else Path(path)
    return _decode(path, cv2.IMREAD_GRAYSCALE)


def read_mask(path: Path, root: Path | None = None) -> np.ndarray:
    """Decode a mask PNG as HxW bool: any colour channel > 0 is lesion (alpha is ignored)."""
    path = safe_join(root, str(path)) if root is not None else Path(path)
    arr = _decode(path, cv2.IMREAD_UNCHANGED)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2)
    return arr > 0


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Write a boolean mask as an 8-bit 0/255 PNG (atomically: temp file + rename)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"{path}: a mask must be 2-D (HxW), but got shape {mask.shape}.")
    ok, buf = cv2.imencode(".png", np.where(mask > 0, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - cv2 encodes any 2-D uint8 array
        raise DataError(f"{path}: could not encode the mask as PNG.")
    write_bytes_atomic(Path(path), buf.tobytes())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Metadata workbook


def read_metadata(path: Path) -> tuple[pd.DataFrame, bytes]:
    """Read the metadata workbook's first sheet as strings/numbers; return (table, raw bytes).

    The raw bytes are returned so the caller can hash exactly what was parsed (read once).
    """
    name = Path(path).name
    if not Path(path).exists():
        raise DataError(
            f"{name}: not found in {Path(path).parent}; a dataset needs images/, masks/ and "
            f"{name} (see docs/data.md)."
        )
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the file's permissions.") from None
    if not data:
        raise DataError(f"{name}: file is empty (0 bytes); re-export the metadata from Excel as .xlsx.")
    if not data.startswith(b"PK"):
        raise DataError(f"{name}: not an Excel .xlsx file; save the metadata as .xlsx (Excel 2007+ workbook).")
    try:
        table = pd.read_excel(io.BytesIO(data), sheet_name=0, dtype=object, engine="openpyxl")
    except Exception as e:  # openpyxl raises many types for a broken workbook
        raise DataError(
            f"{name}: cannot be read as an .xlsx workbook ({type(e).__name__}: {e}); re-save it from Excel."
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table, data
