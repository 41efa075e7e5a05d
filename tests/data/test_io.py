"""harness.data.io: decoding every pixel format, naming every broken file, refusing escaping paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.data import io
from harness.data.io import (
    FileProblem,
    PathEscapeError,
    image_size,
    inspect_png,
    read_image,
    read_mask,
    safe_join,
    write_mask,
)
from harness.errors import DataError

GRADIENT = (np.arange(40 * 30).reshape(30, 40) % 251).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA"])
def test_read_image_any_format_gives_gray_uint8(tmp_path, write_png, mode):
    path = write_png(tmp_path / "x.png", GRADIENT, mode)
    image = read_image(path)
    assert image.shape == (30, 40) and image.dtype == np.uint8
    # RGB written as (g, 0.9g, g) -> luma within a few levels of g; 16-bit g*257 -> g
    assert np.abs(image.astype(int) - GRADIENT).max() <= 0.06 * 255


def test_read_image_palette_and_one_bit(tmp_path):
    from PIL import Image

    Image.fromarray(GRADIENT).convert("P").save(tmp_path / "p.png")
    Image.fromarray(GRADIENT > 100).save(tmp_path / "b.png")
    assert read_image(tmp_path / "p.png").shape == (30, 40)
    assert set(np.unique(read_image(tmp_path / "b.png"))) == {0, 255}


@pytest.mark.parametrize(
    "array,mode",
    [
        (np.where(GRADIENT > 100, 255, 0), None),
        (np.where(GRADIENT > 100, 1, 0), None),
        (GRADIENT > 100, "1"),
    ],
    ids=["0-255", "0-1", "1-bit"],
)
def test_read_mask_is_bool_and_anything_positive_is_lesion(tmp_path, write_png, array, mode):
    mask = read_mask(write_png(tmp_path / "m.png", np.asarray(array, np.uint8), mode))
    assert mask.dtype == bool and np.array_equal(mask, GRADIENT > 100)


def test_read_mask_rgb_any_channel_and_alpha_ignored(tmp_path, write_png):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[5:10, 5:10, 2] = 200  # lesion drawn in one channel only
    assert read_mask(write_png(tmp_path / "rgb.png", rgb)).sum() == 25
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 3] = 255  # opaque alpha everywhere is not a lesion
    rgba[0:2, 0:3, 0] = 255
    assert read_mask(write_png(tmp_path / "rgba.png", rgba)).sum() == 6


def test_write_mask_round_trip_and_rejects_3d(tmp_path):
    mask = GRADIENT > 50
    write_mask(tmp_path / "out" / "m.png", mask)
    assert np.array_equal(read_mask(tmp_path / "out" / "m.png"), mask)
    assert set(np.unique(read_image(tmp_path / "out" / "m.png"))) == {0, 255}
    with pytest.raises(DataError, match="must be 2-D"):
        write_mask(tmp_path / "bad.png", np.zeros((2, 2, 3)))


def test_image_size_reads_only_the_header(tmp_path, write_png):
    path = write_png(tmp_path / "x.png", GRADIENT)
    assert image_size(path) == (40, 30)
    path.write_bytes(path.read_bytes()[:40])  # truncated pixels: the header is enough
    assert image_size(path) == (40, 30)
    assert inspect_png(write_png(tmp_path / "y.png", GRADIENT, "RGBA")).kind == "RGBA8"


def _broken(tmp_path: Path, write_png, kind: str) -> Path:
    path = write_png(tmp_path / f"{kind}.png", GRADIENT)
    data = path.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-png":
        path.write_bytes(b"\xff\xd8\xff\xe0 this is a jpeg, honest")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bitflip":
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif kind == "missing":
        path.unlink()
    return path


@pytest.mark.parametrize(
    "kind,reason",
    [("empty", "empty file"), ("not-png", "not a PNG"), ("truncated", "truncated PNG"), ("bitflip", "bad CRC"),
     ("missing", "no such file")],
)
@pytest.mark.parametrize("reader", [read_image, read_mask, inspect_png])
def test_broken_files_raise_data_error_naming_the_file(tmp_path, write_png, kind, reason, reader):
    path = _broken(tmp_path, write_png, kind)
    with pytest.raises(FileProblem, match=reason) as err:
        reader(path)
    assert str(path) in str(err.value) and isinstance(err.value, DataError)


@pytest.mark.parametrize("kind", ["empty", "not-png", "missing"])
def test_image_size_errors(tmp_path, write_png, kind):
    with pytest.raises(FileProblem):
        image_size(_broken(tmp_path, write_png, kind))


def test_safe_join_accepts_inside_paths(tmp_path):
    (tmp_path / "images").mkdir()
    assert safe_join(tmp_path, "images/a.png") == tmp_path / "images" / "a.png"
    assert safe_join(tmp_path, "images\\a.png") == tmp_path / "images" / "a.png"
    os.symlink(tmp_path / "images", tmp_path / "alias")  # a symlink that stays inside is fine
    assert safe_join(tmp_path, "alias/a.png") == tmp_path / "alias" / "a.png"


@pytest.mark.parametrize("rel", ["../x.png", "images/../../x.png", "/etc/passwd", "C:/x.png", ""])
def test_safe_join_refuses_escapes(tmp_path, rel):
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path / "ds", rel)


def test_symlink_escape_is_refused_and_never_opened(tmp_path, write_png, monkeypatch):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    secret = write_png(tmp_path / "outside.png", GRADIENT)
    os.symlink(secret, root / "images" / "link.png")
    opened = []
    monkeypatch.setattr(io, "_read_bytes", lambda p: opened.append(p) or b"")
    with pytest.raises(PathEscapeError, match="symlink"):
        read_image("images/link.png", root=root)
    with pytest.raises(PathEscapeError):
        read_mask("../outside.png", root=root)
    assert opened == []


@pytest.mark.parametrize(
    "content,message",
    [(None, "not found"), (b"", "empty"), (b"name,label\na,1\n", "not an Excel"),
     (b"PK\x03\x04broken", "cannot be read")],
)
def test_read_metadata_errors(tmp_path, content, message):
    path = tmp_path / "training_metadata.xlsx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        io.read_metadata(path)
