"""PNG structure, pure: bytes in, header out, or a :class:`PngError` saying what is wrong.

Two levels, both without allocating pixels:

* :func:`parse_png` walks the chunks (signature, lengths, CRCs, IHDR first, IEND present) and
  refuses a header whose pixel count is over :data:`MAX_PIXELS` — a 68-byte file can declare
  30000x30000 RGBA16, which a decoder would try to allocate (7.2 GB) before noticing anything.
* :func:`verify_png_data` also inflates the image data in bounded blocks and checks what libpng
  would reject: the IHDR field combinations, PLTE for palette images, consecutive IDAT chunks, a
  complete zlib stream of exactly the size the header implies, and a valid filter byte on every
  row. A file that passes is what the decoder accepts, so ``data check`` can name the defect
  (instead of libpng printing "IDAT: incorrect header check" and OpenCV returning nothing).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 64 * 2**20
"""Largest width x height decoded (~8192 x 8192); ultrasound frames are well under 1 Mpx."""
COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBB")
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_BLOCK = 1 << 20


class PngError(ValueError):
    """What is wrong with a PNG (``reason``) and what to do (``todo``), without the file name."""

    def __init__(self, reason: str, todo: str = "re-export the file"):
        self.reason, self.todo = reason, todo
        super().__init__(reason)


@dataclass(frozen=True)
class PngHeader:
    """What the IHDR chunk says: enough for size checks without decoding pixels."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int = 0

    @property
    def kind(self) -> str:
        """Readable pixel format, e.g. "gray8", "gray16", "RGB8", "RGBA8"."""
        return f"{COLOR_TYPES.get(self.color_type, '?')}{self.bit_depth}"

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _chunks(data: bytes) -> Iterator[tuple[str, int, int]]:
    """(type, body start, body end) of every chunk up to IEND, CRCs verified."""
    if not data:
        raise PngError("empty file (0 bytes)")
    if not data.startswith(PNG_SIGNATURE):
        raise PngError("not a PNG file")
    pos, n = len(PNG_SIGNATURE), len(data)
    while True:
        if pos + 8 > n:
            raise PngError("truncated PNG (no IEND chunk)")
        length, raw_type = _CHUNK.unpack_from(data, pos)
        ctype = raw_type.decode("latin-1")
        end = pos + 8 + length + 4
        if end > n:
            raise PngError(f"truncated PNG ({n} bytes, chunk {ctype!r} runs past the end)")
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(memoryview(data)[pos + 4 : pos + 8 + length]) != crc:
            raise PngError(f"corrupt PNG (bad CRC in chunk {ctype!r})")
        yield ctype, pos + 8, pos + 8 + length
        if ctype == "IEND":
            return
        pos = end


def _header(data: bytes, start: int, end: int) -> PngHeader:
    if end - start != _IHDR.size:
        raise PngError("corrupt PNG (first chunk is not IHDR)")
    w, h, depth, color, _, _, interlace = _IHDR.unpack_from(data, start)
    header = PngHeader(w, h, depth, color, interlace)
    if w == 0 or h == 0:
        raise PngError(f"corrupt PNG (header declares {w}x{h} pixels)")
    if header.pixels > MAX_PIXELS:
        raise PngError(f"declares {w}x{h} pixels ({header.pixels / 1e6:.0f} Mpx), over the decoding limit of "
                       f"{MAX_PIXELS / 1e6:.0f} Mpx", "downscale it")
    return header


def parse_png(data: bytes) -> PngHeader:
    """Verify a PNG's chunk structure and size limit and return its header (no inflating)."""
    header = None
    for ctype, start, end in _chunks(data):
        if header is None:
            if ctype != "IHDR":
                raise PngError("corrupt PNG (first chunk is not IHDR)")
            header = _header(data, start, end)
    assert header is not None  # the loop only ends at IEND, after IHDR
    return header


def _check_fields(data: bytes, start: int) -> None:
    _, _, depth, color, compression, filtering, interlace = _IHDR.unpack_from(data, start)
    if color not in _DEPTHS or depth not in _DEPTHS[color]:
        raise PngError(f"corrupt PNG (bit depth {depth} with colour type {color} is not a PNG format)")
    if compression or filtering or interlace > 1:
        raise PngError(f"corrupt PNG (compression {compression}, filter {filtering}, interlace {interlace} in the "
                       "header; only 0, 0, 0/1 exist)")


def _rows(header: PngHeader) -> Iterator[tuple[int, int]]:
    """(rows, bytes per row including the filter byte) of each pass of the image data."""
    bits = _CHANNELS[header.color_type] * header.bit_depth
    passes = _ADAM7 if header.interlace else ((0, 0, 1, 1),)
    for x0, y0, dx, dy in passes:
        w = (header.width - x0 + dx - 1) // dx if header.width > x0 else 0
        h = (header.height - y0 + dy - 1) // dy if header.height > y0 else 0
        if w and h:
            yield h, 1 + (w * bits + 7) // 8


def verify_png_data(data: bytes) -> PngHeader:
    """Everything :func:`parse_png` checks, plus the image data itself (see the module docstring)."""
    header: PngHeader | None = None
    idat: list[memoryview] = []
    seen: list[str] = []
    for ctype, start, end in _chunks(data):
        if header is None:
            if ctype != "IHDR":
                raise PngError("corrupt PNG (first chunk is not IHDR)")
            header = _header(data, start, end)
            _check_fields(data, start)
        elif ctype == "IDAT":
            if idat and seen[-1] != "IDAT":
                raise PngError(f"corrupt PNG (IDAT chunks are not consecutive: {seen[-1]!r} between them)")
            idat.append(memoryview(data)[start:end])
        elif ctype[0].isupper() and ctype not in ("PLTE", "IEND"):
            raise PngError(f"corrupt PNG (unknown critical chunk {ctype!r})")
        elif ctype == "PLTE" and idat:
            raise PngError("corrupt PNG (PLTE after the image data)")
        seen.append(ctype)
    assert header is not None
    if header.color_type == 3 and "PLTE" not in seen:
        raise PngError("corrupt PNG (palette image without a PLTE chunk)")
    if not idat:
        raise PngError("corrupt PNG (no IDAT image data)")
    _inflate_rows(header, idat)
    return header


def _check_filters(block: np.ndarray, got: int, passes: list[tuple[int, int, int]]) -> None:
    """Every row that starts in ``block`` (which begins at stream offset ``got``) has filter type 0-4."""
    end = got + len(block)
    row_base = 0
    for offset, n, stride in passes:
        first = max(0, -(-(got - offset) // stride))
        last = min(n, (end - 1 - offset) // stride + 1)
        if first < last:
            filters = block[offset + np.arange(first, last, dtype=np.int64) * stride - got]
            if filters.max() > 4:
                bad = int(np.argmax(filters > 4))
                raise PngError(f"corrupt PNG (row {row_base + first + bad} has filter type {filters[bad]}; 0-4 exist)")
        row_base += n


def _inflate_rows(header: PngHeader, idat: list[memoryview]) -> None:
    """Inflate the IDAT stream in bounded blocks; check its length, its end and every row's filter byte.

    Data after the last row is allowed (libpng only warns) up to :data:`_BLOCK` x 16 bytes, so a
    small image cannot hide a decompression bomb.
    """
    passes = []  # (offset of the pass in the stream, rows, bytes per row)
    expected = 0
    for n, stride in _rows(header):
        passes.append((expected, n, stride))
        expected += n * stride
    limit = expected + 16 * _BLOCK
    inflater = zlib.decompressobj()
    got = 0
    try:
        for part in idat:
            pending = bytes(part)
            while pending and not inflater.eof:
                block = inflater.decompress(pending, _BLOCK)
                pending = inflater.unconsumed_tail
                _check_filters(np.frombuffer(block, np.uint8), got, passes)
                got += len(block)
                if got > limit:
                    raise PngError(f"corrupt PNG (image data inflates to over {limit} bytes; the header implies "
                                   f"{expected})")
    except zlib.error as e:
        raise PngError(f"corrupt PNG (image data is not a valid zlib stream: {e})") from None
    if got < expected:
        raise PngError(f"corrupt PNG (image data ends early: {got} of {expected} bytes)")
    if not inflater.eof:
        raise PngError("corrupt PNG (image data ends early: the zlib stream is incomplete)")
