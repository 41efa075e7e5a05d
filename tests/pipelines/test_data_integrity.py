"""What a trained stage's key covers (image bytes, library versions, the fold) and what it need not
(``data.num_workers``: augmentation does not depend on it); the split fields of a run config."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from harness.config import AugmentConfig, load_run_config
from harness.data.datasets import LabelledImages, MaskedImages
from harness.data.transforms import train_transform
from harness.engine.device import resolve_device
from harness.engine.store import code_versions
from harness.pipelines.context import load_dataset, prepare
from harness.pipelines.run import run_trial
from harness.pipelines.stages import _loader
from harness.testing.images import write_png
from harness.tune.study import StudySpec

TINY_C = ["joint.image_size=32", "joint.optim.epochs=1", "joint.optim.batch_size=8", "runtime.threads=1",
          "eval.tta=false"]


def _epochs(workers: int, weighted: bool, dataset: type, n_epochs: int = 2) -> list[tuple[torch.Tensor, ...]]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 32, 32), dtype=np.uint8)
    targets = (rng.random((20, 32, 32)) > 0.7).astype(np.uint8) if dataset is MaskedImages else np.arange(20) % 3
    ds = dataset(images, targets, 3, train_transform(AugmentConfig(strength=2), seed=5))
    config = load_run_config("tiny-a", [f"data.num_workers={workers}"])
    ctx = types.SimpleNamespace(config=config, info=types.SimpleNamespace(pin_memory=False))
    loader = _loader(ctx, ds, 6, np.arange(20) % 3, seed=5, weighted=weighted)  # type: ignore[arg-type]
    batches = []
    for epoch in range(n_epochs):
        for step, (x, y) in enumerate(loader):
            batches.append((x, y))
            if epoch == 0 and step == 1:  # an epoch cut short (optim.max_steps_per_epoch) must not shift the next
                break
    return batches


@pytest.mark.parametrize("weighted,dataset", [(False, MaskedImages), (True, LabelledImages)])
def test_num_workers_does_not_change_the_augmented_batches(weighted, dataset):
    """Measured before the change: with 2 workers every batch differed from 0 workers (each worker
    reseeded the augmentation). Now order and augmentation come from one seeded stream, so
    ``data.num_workers`` is rightly not part of the stage key."""
    main, workers = _epochs(0, weighted, dataset), _epochs(2, weighted, dataset)
    assert len(main) == len(workers) == 5
    for (x0, y0), (x2, y2) in zip(main, workers, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(main[2][0], main[3][0]), "and augmentation still varies"


def test_stage_key_covers_image_bytes_and_library_versions(make_dataset, tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "ds", n=16, size=40)
    config = load_run_config("tiny-c", TINY_C)
    store = tmp_path / "store"

    def trained(name: str) -> list[str]:
        return run_trial(config, tmp_path / name, data_dir=data, store_root=store, subsets=("val",)).trained_stages

    assert trained("first") == ["joint"]
    assert trained("same") == [], "same bytes, same versions: reused"
    image = next(iter(sorted((data / "images").glob("*.png"))))
    pixels = np.asarray(Image.open(image).convert("L"))
    write_png(image, 255 - pixels)  # new pixels under an unchanged workbook
    assert trained("new_pixels") == ["joint"]
    record = json.loads((tmp_path / "new_pixels" / "stages" / "joint.json").read_text())
    assert record["versions"] == code_versions() and set(record["versions"]) == {
        "harness", "torch", "timm", "segmentation-models-pytorch", "albumentations"}
    assert trained("again") == []
    monkeypatch.setattr("harness.pipelines.stages.code_versions", lambda: {**code_versions(), "timm": "9.9"})
    assert trained("new_timm") == ["joint"]


def test_content_hash_is_computed_once_per_version_of_the_files(make_dataset, tmp_path, caplog):
    from harness.data.cache import content_hash
    from harness.data.check import load_index

    index = load_index(make_dataset(tmp_path / "ds", n=6, size=32), check=False)
    with caplog.at_level("INFO", logger="harness.data.cache"):
        first = content_hash(index)
        assert content_hash(index) == first
    assert caplog.text.count("hashed 12 image and mask files") == 1
    mask = sorted((index.root / "masks").glob("*.png"))[0]
    write_png(mask, np.zeros((32, 32), np.uint8))
    assert content_hash(index) != first


def test_each_fold_has_its_own_data_key(make_dataset, tmp_path):
    data = make_dataset(tmp_path / "ds", n=24, size=32, images_per_patient=1)
    info = resolve_device(load_run_config("tiny-c").runtime)

    def key(*overrides: str) -> str:
        config = load_run_config("tiny-c", ["data.split=cv", "data.test_fraction=0.2", *overrides])
        return prepare(config, info, tmp_path / "store", data_dir=data, check_data=False).data_key["split"]

    keys = [key("data.folds=3", f"data.fold={k}") for k in range(3)] + [key()]
    assert len(set(keys)) == 4
    assert sorted(p.name for p in (data / "splits").glob("*.json")) == \
        ["cv.fold0of3.json", "cv.fold1of3.json", "cv.fold2of3.json", "cv.json"]


def test_fold_must_be_below_folds():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match=r"fold must be in \[0, folds - 1\] = \[0, 2\], but got fold=3"):
        load_run_config("tiny-c", ["data.folds=3", "data.fold=3"])


def test_group_duplicates_from_the_run_config_and_the_study(make_dataset, tmp_path):
    data = make_dataset(tmp_path / "ds", n=12, size=32)
    config = load_run_config("tiny-c", ["data.group_duplicates=true", "data.split=grouped"])
    _, _, split = load_dataset(config, data, check_data=False)
    assert split.group_duplicates
    assert json.loads((data / "splits" / "grouped.json").read_text())["group_duplicates"] is True
    spec = StudySpec.model_validate({"name": "s", "pipelines": ["c"], "base": {"c": "tiny-c"}, "trials": 1,
                                     "data": {"group_duplicates": True}})
    assert spec.run_config("c", {}).data.group_duplicates is True
    assert StudySpec.model_validate({"name": "s", "pipelines": ["c"], "base": {"c": "tiny-c"}, "trials": 1}
                                    ).run_config("c", {}).data.group_duplicates is False
