"""harness.data.png: chunk structure, the size limit before decoding, and image data verified like libpng.

Files are built by hand (:mod:`harness.testing.hostile`) and OpenCV is the oracle: what
``verify_png_data`` accepts must decode, and every defect it names must be one OpenCV refuses.
"""

from __future__ import annotations

import os
import zlib
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from PIL import Image

from harness.data.png import MAX_PIXELS, PngError, parse_png, verify_png_data
from harness.testing.hostile import png_chunk, raw_png, raw_rows


@contextmanager
def _quiet_stderr():
    """libpng prints its errors on fd 2; keep the test log clean."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def decodes(data: bytes) -> bool:
    with _quiet_stderr():
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("depth,color", [(1, 0), (8, 0), (16, 0), (8, 2), (16, 6), (8, 4), (2, 0)])
def test_valid_files_pass_and_decode(depth, color, interlace):
    data = raw_png(13, 7, depth, color, interlace=interlace, fill=0x55)
    header = verify_png_data(data)
    assert (header.width, header.height, header.bit_depth, header.color_type) == (13, 7, depth, color)
    assert decodes(data)


def test_pil_written_files_pass(tmp_path):
    arr = (np.arange(30 * 40).reshape(30, 40) % 251).astype(np.uint8)
    for mode in ("L", "RGB", "RGBA", "P", "1", "LA"):
        path = tmp_path / f"{mode}.png"
        Image.fromarray(arr).convert(mode).save(path)
        assert verify_png_data(path.read_bytes()).width == 40


def test_dimension_bomb_is_refused_from_the_header():
    bomb = raw_png(30000, 30000, 16, 6, idat=b"x")
    assert len(bomb) < 80
    for check in (parse_png, verify_png_data):
        with pytest.raises(PngError, match=r"declares 30000x30000 pixels .* over the decoding limit") as e:
            check(bomb)
        assert e.value.todo == "downscale it"
    side = int(MAX_PIXELS**0.5)
    parse_png(raw_png(side, side, idat=b"x"))  # at the limit: the header is fine (the data is not checked)


@pytest.mark.parametrize(
    "data,message",
    [
        (raw_png(16, 16, idat=b"garbage" * 10), "not a valid zlib stream"),
        (raw_png(16, 16, idat=zlib.compress(raw_rows(16, 16))[:-6]), "ends early"),
        (raw_png(16, 16, idat=zlib.compress(raw_rows(16, 8))), "ends early: 136 of 272 bytes"),
        (raw_png(16, 16, idat=zlib.compress(b"\x07" * 272)), "row 0 has filter type 7"),
        (raw_png(16, 16, 3, 2), "bit depth 3 with colour type 2"),
        (raw_png(16, 16, 8, 3), "palette image without a PLTE chunk"),
        (raw_png(16, 16, before_idat=((b"ZZZZ", b"?"),)), "unknown critical chunk 'ZZZZ'"),
        (raw_png(0, 16, idat=b"x"), "declares 0x16 pixels"),
    ],
    ids=["garbage", "truncated-stream", "short-data", "bad-filter", "bad-depth", "no-plte", "critical", "zero"],
)
def test_defects_that_pass_the_crc_are_named_and_do_not_decode(data, message):
    with pytest.raises(PngError, match=message):
        verify_png_data(data)
    assert not decodes(data)


def test_structure_only_parse_accepts_garbage_data_that_verify_refuses():
    data = raw_png(16, 16, idat=b"garbage")
    assert parse_png(data).width == 16  # structure and CRCs are fine: that is why the data is verified too
    with pytest.raises(PngError):
        verify_png_data(data)


def test_a_small_image_cannot_hide_a_decompression_bomb():
    data = raw_png(8, 8, idat=zlib.compress(raw_rows(8, 8) + bytes(64 * 2**20)))
    assert len(data) < 100_000
    with pytest.raises(PngError, match="inflates to over"):
        verify_png_data(data)


def test_idat_chunks_must_be_consecutive():
    good = raw_png(8, 8)
    body = zlib.compress(raw_rows(8, 8))
    split = good[:33] + png_chunk(b"IDAT", body[:5]) + png_chunk(b"tEXt", b"a\0b") + png_chunk(b"IDAT", body[5:]) \
        + png_chunk(b"IEND", b"")
    with pytest.raises(PngError, match="not consecutive"):
        verify_png_data(split)


def test_random_corruptions_agree_with_opencv():
    """Whatever passes the verification decodes (the other way round the check may be stricter)."""
    rng = np.random.default_rng(0)
    raw = raw_rows(24, 20, 8, 2)
    for _ in range(300):
        stream = bytearray(zlib.compress(bytes(rng.integers(0, 5, len(raw), dtype=np.uint8)) if rng.random() < .5
                                         else raw))
        op = rng.integers(0, 3)
        if op == 0:
            stream[rng.integers(0, len(stream))] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            del stream[int(rng.integers(0, len(stream))):]
        else:
            stream[int(rng.integers(0, len(stream)))] = int(rng.integers(0, 256))
        data = raw_png(24, 20, 8, 2, idat=bytes(stream))
        try:
            verify_png_data(data)
        except PngError:
            continue
        assert decodes(data)
