"""Hostile inputs for the data layer's robustness tests: hand-built PNGs, workbook cell edits, failing writes.

The PNGs are assembled chunk by chunk with zlib and CRC32 only (never with :mod:`harness.data`),
so a bug in the product's PNG parsing cannot hide itself: a file can declare any size, carry
garbage image data under valid CRCs, or be interlaced, exactly as a hostile or broken exporter
would write it. :func:`failing_writes` turns the n-th write of a file object into ENOSPC, the way
a disk that fills up mid-way behaves, without needing a full disk.
"""

from __future__ import annotations

import builtins
import errno
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_rows(width: int, height: int, bit_depth: int = 8, color_type: int = 0, interlace: int = 0,
             fill: int = 0) -> bytes:
    """The filtered image data a PNG of this header needs: filter byte 0 and ``fill`` bytes on every row of
    every pass (Adam7 when ``interlace``)."""
    bits = _CHANNELS[color_type] * bit_depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    out = bytearray()
    for x0, y0, dx, dy in passes:
        w = len(range(x0, width, dx))
        h = len(range(y0, height, dy))
        if w and h:
            out += (b"\0" + bytes([fill]) * ((w * bits + 7) // 8)) * h
    return bytes(out)


def raw_png(width: int, height: int, bit_depth: int = 8, color_type: int = 0, *, idat: bytes | None = None,
            interlace: int = 0, before_idat: tuple[tuple[bytes, bytes], ...] = (), fill: int = 0) -> bytes:
    """A PNG with valid chunk CRCs whose header says anything; ``idat`` replaces the (correct) image data.

    ``raw_png(30000, 30000, 16, 6, idat=b"x")`` is the 68-byte dimension bomb; ``idat=b"garbage"`` a
    file whose structure checks pass but whose pixels cannot be decoded.
    """
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    if idat is None:
        idat = zlib.compress(raw_rows(width, height, bit_depth, color_type, interlace, fill))
    chunks = [png_chunk(b"IHDR", header), *(png_chunk(k, b) for k, b in before_idat), png_chunk(b"IDAT", idat),
              png_chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(chunks)


def set_cells(path: Path, cells: dict[str, Any]) -> None:
    """Write values into cells of the first sheet of an .xlsx workbook (e.g. ``{"XFD1048576": "x"}``)."""
    import openpyxl

    book = openpyxl.load_workbook(path)
    for ref, value in cells.items():
        book.worksheets[0][ref] = value
    book.save(path)


class _FullDisk:
    """A file object whose writes fail with ENOSPC once ``budget`` bytes were written (shared by all files)."""

    def __init__(self, f: Any, budget: list[int]):
        self._f, self._budget = f, budget

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if n > self._budget[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._budget[0] -= n
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class _OsWithFullDisk:
    """The ``os`` module as one module sees it, with ``fdopen`` files that fill the disk."""

    def __init__(self, real: Any, left: list[int]):
        self._real, self._left = real, left

    def fdopen(self, fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = self._real.fdopen(fd, mode, *args, **kwargs)
        return _FullDisk(f, self._left) if any(c in mode for c in "wxa") else f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def failing_writes(module: Any, budget: int) -> Iterator[Callable[[], int]]:
    """Make files that ``module`` opens for writing (with ``open`` or ``os.fdopen``) fail with ENOSPC once
    ``budget`` bytes were written in total, until the block ends.

    Yields a function returning the bytes left. Only ``module``'s own calls are affected.
    """
    left = [budget]

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - returned open, as open does
        return _FullDisk(f, left) if any(c in mode for c in "wxa") else f

    had_open, real_os = "open" in vars(module), vars(module).get("os")
    saved_open = vars(module).get("open")
    module.open = fake_open
    if real_os is not None:
        module.os = _OsWithFullDisk(real_os, left)
    try:
        yield lambda: left[0]
    finally:
        if had_open:
            module.open = saved_open
        else:
            del module.open
        if real_os is not None:
            module.os = real_os
