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


def test_patients_of_1_to_3_images_reach_the_metadata_and_the_fake_runs(tmp_path):
    import pandas as pd

    ds = make_dataset(tmp_path / "ds", n=11, size=32, images_per_patient=(1, 2, 3))
    assert [im.patient_id for im in ds.images] == ["P000", "P001", "P001", "P002", "P002", "P002", "P003", "P004",
                                                   "P004", "P005", "P005"]
    meta = pd.read_excel(ds.root / "training_metadata.xlsx")
    assert meta["patient_id"].tolist() == [im.patient_id for im in ds.images]
    assert check_dataset(ds.root, preview=False).ok  # a patient keeps one label
    no_ids = make_dataset(tmp_path / "no_ids", n=4, size=32, patient_ids=False).images
    assert [im.patient_id for im in no_ids] == [im.image_id for im in no_ids]  # as harness.data reads it
    run = make_run(tmp_path / "run", ds.images, "b", seed=3)
    pred = pd.read_csv(run / "predictions.csv")
    assert pred["patient_id"].tolist() == [im.patient_id for im in ds.images]
    assert pred["hd95"].isna().any() and np.allclose(pred["hd95_penalised"], pred["hd95"].fillna(np.hypot(32, 32)))
    with pytest.raises(ValueError, match="images_per_patient must be >= 1"):
        make_dataset(tmp_path / "bad", n=3, images_per_patient=(1, 0))


def test_patient_correlation_makes_a_patients_images_share_their_outcome(tmp_path):
    import pandas as pd

    images = make_dataset(tmp_path / "ds", n=60, size=32, images_per_patient=3).images
    same = pd.read_csv(make_run(tmp_path / "same", images, "a", seed=1, accuracy=0.6, patient_correlation=1.0)
                       / "predictions.csv")
    right = (same["pred_label"] == same["label"]).groupby(same["patient_id"])
    assert (right.nunique() == 1).all() and 0 < right.first().mean() < 1
    free = pd.read_csv(make_run(tmp_path / "free", images, "a", seed=1, accuracy=0.6) / "predictions.csv")
    assert ((free["pred_label"] == free["label"]).groupby(free["patient_id"]).nunique() > 1).any()
    with pytest.raises(ValueError, match=r"patient_correlation must be in \[0, 1\]"):
        make_run(tmp_path / "bad", images, "a", patient_correlation=1.5)
