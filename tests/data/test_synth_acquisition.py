"""Acquisition settings of the synthetic generator: defaults unchanged, each knob moves what it names."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.cli import main
from harness.data.synth import DEFAULT_ACQUISITION, METADATA_FILE, Acquisition, synthesize
from harness.errors import DataError

# Decoded pixels of synthesize(n_images=6, size=64, seed=11) before the acquisition settings existed (numpy's
# Generator streams are stable across versions; a change in OpenCV's filters would move this too).
DEFAULT_PIXELS_SHA256 = "d5572a5d31674ed814ea2964cd8de32430b15327f551f193bd38a3e398cf6780"


def _arrays(root: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    table = pd.read_excel(root / METADATA_FILE)
    images = np.stack([np.asarray(Image.open(root / p)) for p in table.image_path])
    masks = np.stack([np.asarray(Image.open(root / p)) for p in table.mask_path])
    return table, images, masks


Arrays = tuple[pd.DataFrame, np.ndarray, np.ndarray]


def _make(tmp_path: Path, name: str, n: int = 10, size: int = 64, **knobs) -> Arrays:
    synthesize(tmp_path / name, n_images=n, size=size, seed=5, proportions=(1, 1, 0),
               acquisition=replace(DEFAULT_ACQUISITION, **knobs))
    return _arrays(tmp_path / name)


def test_defaults_write_the_same_pixels_as_before(tmp_path):
    synthesize(tmp_path / "d", n_images=6, size=64, seed=11)
    table, images, masks = _arrays(tmp_path / "d")
    digest = hashlib.sha256()
    for image in images:
        digest.update(image.tobytes())
    for mask in masks:
        digest.update(mask.tobytes())
    assert digest.hexdigest() == DEFAULT_PIXELS_SHA256
    synthesize(tmp_path / "e", n_images=6, size=64, seed=11, acquisition=Acquisition())
    assert (tmp_path / "e" / METADATA_FILE).read_bytes() == (tmp_path / "d" / METADATA_FILE).read_bytes()
    assert all((tmp_path / "e" / p).read_bytes() == (tmp_path / "d" / p).read_bytes() for p in table.image_path)


def test_gain_shifts_mean_grey_and_keeps_the_anatomy(tmp_path):
    _, base, base_masks = _make(tmp_path, "base")
    _, bright, bright_masks = _make(tmp_path, "bright", gain_db=8.0)
    _, dark, _ = _make(tmp_path, "dark", gain_db=-8.0)
    shift = bright.reshape(len(bright), -1).mean(1) - base.reshape(len(base), -1).mean(1)
    assert (shift > 15).all()  # ~8 dB x 255 / (45..60 dB), less where pixels saturate
    assert (dark.reshape(len(dark), -1).mean(1) < base.reshape(len(base), -1).mean(1) - 15).all()
    assert np.array_equal(base_masks, bright_masks)


@pytest.mark.parametrize(("knob", "value", "lo", "hi"), [("lesion_scale", 0.6, 0.2, 0.55),
                                                         ("lesion_scale", 1.4, 1.5, 2.5),
                                                         ("depth_scale", 1.6, 0.25, 0.6)])
def test_lesion_scale_and_depth_change_the_mask_area(tmp_path, knob, value, lo, hi):
    _, _, base = _make(tmp_path, "base")
    _, images, masks = _make(tmp_path, knob, **{knob: value})
    assert images.shape == (10, 64, 64)
    ratio = np.median((masks > 0).sum((1, 2)) / (base > 0).sum((1, 2)))
    assert lo < ratio < hi  # area ~ linear scale squared (clipped by the image where lesions grow)


def _roughness(images: np.ndarray) -> float:
    """Mean |difference of lateral neighbours| / std: small for coarse speckle."""
    x = images.astype(float)
    return float(np.abs(np.diff(x, axis=2)).mean() / x.std())


def test_speckle_scale_coarsens_the_grain(tmp_path):
    _, base, _ = _make(tmp_path, "base", size=128, n=4)
    _, coarse, _ = _make(tmp_path, "coarse", size=128, n=4, speckle_scale=2.0)
    _, fine, _ = _make(tmp_path, "fine", size=128, n=4, speckle_scale=0.6)
    assert _roughness(coarse) < 0.85 * _roughness(base) < 0.85 * _roughness(fine)


def test_dynamic_range_sets_contrast(tmp_path):
    """Grey levels per dB are 255 / range: a wider range shows the same speckle with smaller grey steps."""
    _, base, _ = _make(tmp_path, "base", n=6)
    _, flat, _ = _make(tmp_path, "flat", n=6, dynamic_range_db=(80.0, 80.0))

    def step(images: np.ndarray) -> float:
        return float(np.abs(np.diff(images.astype(float), axis=2)).mean())

    assert step(flat) < 0.85 * step(base)


def test_variation_is_seeded_and_keeps_patients(tmp_path):
    t0, base, _ = _make(tmp_path, "base", n=12)
    t1, varied, _ = _make(tmp_path, "varied", n=12, variation=1.0)
    _, again, _ = _make(tmp_path, "again", n=12, variation=1.0)
    pd.testing.assert_frame_equal(t0, t1)
    assert np.array_equal(varied, again) and not np.array_equal(varied, base)


def test_bad_settings_are_one_line_each_and_reported_together(tmp_path):
    bad = Acquisition(gain_db=99, speckle_scale=0, depth_scale=float("nan"), dynamic_range_db=(70, 40),
                      lesion_scale=True, variation=-1)  # type: ignore[arg-type]
    with pytest.raises(DataError) as err:
        synthesize(tmp_path / "d", n_images=0, acquisition=bad)
    problems = err.value.problems
    assert len(problems) == 7 and all("\n" not in p for p in problems)
    for name in ("gain_db", "speckle_scale", "depth_scale", "dynamic_range_db", "lesion_scale", "variation",
                 "n_images"):
        assert sum(name in p for p in problems) == 1, name
    assert not (tmp_path / "d").exists()


def test_cli_knobs_and_errors(tmp_path, capsys):
    assert main(["-q", "data", "synth", str(tmp_path / "d"), "--images", "3", "--size", "32", "--gain-db", "6",
                 "--dynamic-range", "50,70", "--depth-scale", "1.2"]) == 0
    out = capsys.readouterr().out
    assert "acquisition: gain_db=6.0, depth_scale=1.2, dynamic_range_db=(50.0, 70.0)" in out
    assert main(["-q", "data", "synth", str(tmp_path / "e"), "--lesion-scale", "9", "--dynamic-range", "a,b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --dynamic-range must be LOW,HIGH in dB (e.g. 40,70) or one number, but got 'a,b'."]
    assert main(["-q", "data", "synth", str(tmp_path / "e"), "--lesion-scale", "9", "--speckle-scale", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: acquisition.") for line in err)
    assert not (tmp_path / "e").exists()
