"""A Grad-CAM stand-in for fake runs: a random tiny timm classifier instead of a trained one.

The report's Grad-CAM section takes a provider with the contract of
:mod:`harness.pipelines.artifacts` (``load_classifier``, ``classifier_input``). The real one rebuilds
the classifier from a run's config; fake runs (:mod:`harness.testing.runs`) have no trained
classifier, so :func:`add_fake_classifier` saves a random ``test_efficientnet`` and
:class:`FakeArtifacts` loads it back. The weights are random: the maps exercise plumbing, not meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import yaml

from harness import CLASS_NAMES
from harness.pipelines.registry import get_pipeline
from harness.testing.runs import classifier_stage

_MODEL = "test_efficientnet"  # timm's smallest EfficientNet: builds and runs in milliseconds
_MEAN, _STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _pipeline(run_dir: Path) -> str:
    return str(yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["pipeline"])


def _class_names(pipeline: str) -> tuple[str, ...]:
    """The explained stage's classes (registry): A's and C's all three, B's ROI classifier two."""
    spec = get_pipeline(pipeline)
    return CLASS_NAMES[: max(spec.stage(classifier_stage(pipeline)).classes, 2)]


def _input_kind(pipeline: str) -> str:
    explain = get_pipeline(pipeline).explain
    return explain[1] if explain else "full"


def add_fake_classifier(run_dir: Path, image_size: int = 64, seed: int = 0) -> Path:
    """Save a random classifier as the run's classifier checkpoint and point its stage record
    (``stages/<stage>.json``: ``checkpoint``, ``image_size``) at it; return the checkpoint path."""
    import timm
    import torch

    pipeline = _pipeline(run_dir)
    stage = classifier_stage(pipeline)
    torch.manual_seed(seed)
    model = timm.create_model(_MODEL, pretrained=False, num_classes=len(_class_names(pipeline)))
    ckpt = run_dir / "checkpoints" / f"{stage}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    path = run_dir / "stages" / f"{stage}.json"
    info = json.loads(path.read_text())
    info.update(checkpoint=str(ckpt.resolve()), image_size=image_size)
    path.write_text(json.dumps(info, indent=2))
    return ckpt


class FakeArtifacts:
    """``load_classifier`` / ``classifier_input`` with the contract of harness.pipelines.artifacts,
    for runs prepared with :func:`add_fake_classifier`."""

    def load_classifier(self, run_dir: Path) -> tuple[Any, int, str, tuple[str, ...]]:
        """(model in eval mode, input size, "full" | "roi", class names); a missing checkpoint
        raises FileNotFoundError like the real provider, so the report's skip path is tested."""
        import timm
        import torch

        pipeline = _pipeline(run_dir)
        info = json.loads((Path(run_dir) / "stages" / f"{classifier_stage(pipeline)}.json").read_text())
        ckpt = Path(info["checkpoint"])
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint")
        names = _class_names(pipeline)
        model = timm.create_model(_MODEL, pretrained=False, num_classes=len(names))
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        return model.eval(), int(info.get("image_size", 64)), _input_kind(pipeline), names

    def classifier_input(self, run_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(normalised H x W x 3 float32 input, H x W uint8 image shown): the whole image for A,
        the ROI crop of the run's predicted mask (margin 0.2) for B."""
        from harness.data.io import read_image, read_mask
        from harness.pipelines.roi import crop_resize, roi_box

        _, size, kind, _ = self.load_classifier(run_dir)
        table = pd.read_csv(Path(run_dir) / "predictions.csv")
        row = table[table["image_id"].astype(str) == image_id].iloc[0]
        image = read_image(Path(row["image_path"]))
        if kind == "roi":
            mask = read_mask(Path(run_dir) / "pred_masks" / f"{image_id}.png")
            display = crop_resize(image, roi_box(mask, 0.2), size)
        else:
            display = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        x = (np.repeat(display[..., None], 3, axis=2) / 255.0 - _MEAN) / _STD
        return x.astype(np.float32), display
