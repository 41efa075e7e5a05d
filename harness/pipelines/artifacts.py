"""Trained classifiers and their inputs, rebuilt from a run directory (for Grad-CAM in the report).

Pipeline A's classifier sees the whole image; B's sees the ROI crop of the run's predicted mask with
the run's inference margin, exactly as in :mod:`harness.pipelines.b`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from harness import CLASS_NAMES
from harness.config import RunConfig
from harness.data.cache import resize_image
from harness.data.io import read_image, read_mask
from harness.data.transforms import to_input
from harness.errors import DataError
from harness.models.classifier import create_classifier
from harness.pipelines.roi import crop_roi

CLASSIFIER_STAGE = {"a": "classifier3", "b": "roi_classifier"}


def _config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path}: missing; is {run_dir} a run directory written by `harness run`?")
    return RunConfig.model_validate(yaml.safe_load(path.read_text()))


def load_classifier(run_dir: Path) -> tuple[nn.Module, int, str, tuple[str, ...]]:
    """(model in eval mode on CPU, input size, "full" | "roi", class names) of the run's classifier."""
    cfg = _config(run_dir)
    stage = CLASSIFIER_STAGE[cfg.pipeline]
    record = json.loads((Path(run_dir) / "stages" / f"{stage}.json").read_text())
    names = CLASS_NAMES if cfg.pipeline == "a" else CLASS_NAMES[:2]
    model = create_classifier(cfg.classifier.model_copy(update={"pretrained": False}), len(names), cfg.data.channels)
    model.load_state_dict(torch.load(record["checkpoint"], map_location="cpu", weights_only=True))
    return model.eval(), cfg.classifier.image_size, "full" if cfg.pipeline == "a" else "roi", names


def classifier_input(run_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(normalised H x W x C float32 input, H x W uint8 image shown) for one evaluated image."""
    cfg = _config(run_dir)
    table = pd.read_csv(Path(run_dir) / "predictions.csv", dtype={"image_id": str})
    rows = table[table["image_id"] == str(image_id)]
    if rows.empty:
        raise DataError(f"{run_dir}/predictions.csv: no image {image_id}.")
    image = read_image(Path(rows.iloc[0]["image_path"]))
    size = cfg.classifier.image_size
    if cfg.pipeline == "b":
        mask = read_mask(Path(run_dir) / "pred_masks" / f"{image_id}.png")
        display = crop_roi(image, mask, cfg.roi.margin, size)[0]
    else:
        display = resize_image(image, size)
    return to_input(display, cfg.data.channels).transpose(1, 2, 0), display
