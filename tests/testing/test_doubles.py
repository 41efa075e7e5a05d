"""harness.testing: the properties other tests rely on, stated once (a fake that drifts breaks here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.data.check import check_dataset
from harness.data.io import read_image, read_mask
from harness.data.splits import hamming_pairs, phash
from harness.pipelines.registry import pipeline_names
from harness.testing.datasets import make_dataset
from harness.testing.images import ellipse_mask, ultrasound_image, write_png
from harness.testing.runs import classifier_stage, make_run, stages


@pytest.mark.parametrize("shape", [(20, 28), (48, 48), (72, 96)])
def test_image_is_deterministic_and_the_lesion_is_darker(shape):
    a, mask = ultrasound_image(shape, 1, np.random.default_rng(3))
    b, _ = ultrasound_image(shape, 1, np.random.default_rng(3))
    assert a.shape == mask.shape == shape and a.dtype == np.uint8 and mask.dtype == bool
    assert np.array_equal(a, b) and mask.any() and not mask.all()
    assert a[mask].mean() < 0.7 * a[~mask].mean()


def test_normal_has_no_lesion_and_a_given_mask_is_used_exactly():
    _, normal = ultrasound_image((32, 40), 2, np.random.default_rng(0))
    assert not normal.any()
    box = np.zeros((32, 40), bool)
    box[5:11, 5:11] = True
    _, mask = ultrasound_image((32, 40), 0, np.random.default_rng(0), mask=box)
    assert np.array_equal(mask, box)
    with pytest.raises(ValueError, match=r"mask shape \(4, 4\) differs from the image shape \(32, 40\)"):
        ultrasound_image((32, 40), 0, np.random.default_rng(0), mask=np.ones((4, 4), bool))


def test_distinct_images_are_not_perceptual_duplicates():
    """Duplicate grouping (harness.data.splits) must find only planted copies in fake datasets."""
    rng = np.random.default_rng(0)
    hashes = [phash(ultrasound_image((48, 48), k % 3, rng)[0]) for k in range(30)]
    assert hamming_pairs(hashes, 24) == []


def test_ellipse_is_never_empty_on_tiny_images():
    rng = np.random.default_rng(1)
    assert all(ellipse_mask((8, 8), rng, 0.4).any() for _ in range(50))


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA"])
def test_write_png_modes_read_back_as_the_same_gray_image(tmp_path, mode):
    image, _ = ultrasound_image((24, 32), 0, np.random.default_rng(0))
    back = read_image(write_png(tmp_path / f"{mode}.png", image, mode))
    # RGB/RGBA carry a green channel at 90 %: luminance moves by at most 0.59 * 10 % of 255
    assert back.shape == image.shape and np.abs(back.astype(int) - image).max() <= 16


def test_write_png_rejects_an_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match=r"mode must be one of .* but got mode='CMYK'"):
        write_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8), "CMYK")


def test_dataset_is_valid_and_its_ground_truth_matches_the_files(tmp_path):
    ds = make_dataset(tmp_path / "ds", n=6, size=(40, 30), modes=("RGB", "L"))
    assert check_dataset(ds.root, preview=False).ok
    assert [im.label for im in ds.images] == [0, 0, 1, 1, 2, 2]
    for im in ds.images:
        assert im.gt.shape == (30, 40) and np.array_equal(read_mask(im.mask_path), im.gt)


def test_run_has_one_stage_record_per_registered_stage(tmp_path):
    images = make_dataset(tmp_path / "ds", n=6, size=32).images
    for pipeline in pipeline_names():
        run = make_run(tmp_path / pipeline, images, pipeline, epochs=3)
        records = sorted(p.stem for p in (run / "stages").glob("*.json"))
        assert records == sorted(s for s, _ in stages(pipeline))
        assert classifier_stage(pipeline) in records
        assert json.loads((run / "metrics.json").read_text())["pipeline"] == pipeline
    with pytest.raises(ValueError, match=r"pipeline must be one of \['a', 'b', 'c'.*\], but got pipeline='z'"):
        make_run(tmp_path / "z", images, "z")
