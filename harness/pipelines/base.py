"""What a pipeline is: trains its stages, then maps images to (3-class probabilities, label, mask)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from harness.config import RunConfig
from harness.data.cache import resize_image
from harness.pipelines.context import RunContext
from harness.pipelines.registry import get_pipeline
from harness.pipelines.stages import Stage


@dataclass
class Inference:
    """Per-image outputs of a pipeline, aligned with the ids it was given."""

    ids: list[str]
    probs: np.ndarray  # (N, 3) over Benign, Malignant, Normal
    pred_labels: np.ndarray  # (N,)
    masks: list[np.ndarray]  # bool (H, W) at each image's ORIGINAL size


class Pipeline(ABC):
    """A diagnostic pipeline: ``train`` returns its stages, ``infer`` runs them on images.

    Register an implementation with :func:`harness.pipelines.registry.register_pipeline`. ``infer``
    must return probabilities whose argmax is the predicted label, and an empty mask for images it
    calls Normal (the run-directory contract every pipeline obeys).
    """

    name: str = ""

    @abstractmethod
    def train(self, ctx: RunContext) -> dict[str, Stage]:
        """Train or load every stage (stage name -> trained stage)."""

    @abstractmethod
    def infer(self, ctx: RunContext, stages: dict[str, Stage], ids: Sequence[str]) -> Inference:
        """Run the pipeline on ``ids`` (never part of the training split)."""

    def explain_input(self, config: RunConfig, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """What the explained stage (the spec's ``explain``) sees of an original image, given the mask
        the pipeline predicted for it: by default the whole image at that stage's input size."""
        spec = get_pipeline(self.name)
        if spec.explain is None:
            raise ValueError(f"pipeline {self.name} names no stage to explain")
        return resize_image(image, getattr(config, spec.stage(spec.explain[0]).section).image_size)


def create_pipeline(name: str) -> Pipeline:
    return get_pipeline(name).create()


def upsample(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a (h, w) probability map to the original (H, W) image size (bilinear)."""
    h, w = shape
    if prob.shape == (h, w):
        return prob
    return cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
