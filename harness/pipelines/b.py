"""Pipeline B, segmentation-first (paper 3.2): 3-class U-Net++ (background/benign/malignant),
lesion present if the predicted lesion area exceeds a pixel threshold, ROI crop (eqs. 9-12) of the
original image, then a Benign-vs-Malignant classifier on the crop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import BENIGN, MALIGNANT, NORMAL
from harness.config import RunConfig
from harness.data.datasets import class_masks
from harness.pipelines.base import Inference, Pipeline, upsample
from harness.pipelines.context import RunContext
from harness.pipelines.registry import StageSpec, register_pipeline
from harness.pipelines.roi import crop_resize, crop_roi, jitter_box, roi_box, tight_box
from harness.pipelines.stages import CLASSIFIER, SEGMENTER, Stage, classify, lesion_probability, train_stage

TRAIN_CROP_THRESHOLD = 0.5
"""Lesion probability threshold for the classifier's training crops from predicted masks (fixed, so
that the evaluation-only ``eval.mask_threshold`` never changes what the classifier was trained on)."""


def lesion_pixel_threshold(cfg: RunConfig) -> int:
    """Pixels (at the segmentation resolution) a predicted lesion must exceed to count as present."""
    if cfg.roi.lesion_min_fraction is not None:
        return int(cfg.roi.lesion_min_fraction * cfg.segmenter.image_size**2)
    return cfg.roi.lesion_min_pixels


def lesion_score(pixels: np.ndarray, threshold: int) -> np.ndarray:
    """Image-level lesion probability that follows B's area rule, so argmax of the three
    probabilities is B's label: monotone in the predicted lesion area, <= 0.45 at or below the pixel
    threshold (Normal wins, even against a certain B-vs-M call) and > 2/3 above it (then
    max(P(B), P(M)) = score * max(bm) > 1 - score,
    since the B-vs-M classifier's larger probability is >= 0.5)."""
    pixels = np.asarray(pixels, dtype=float)
    t = max(float(threshold), 1.0)
    below = 0.45 * np.minimum(pixels, t) / t  # < 0.5: 1 - score beats score * max(bm) <= score
    above = 2 / 3 + (1 / 3) * (1 - t / np.maximum(pixels, t + 1))
    return np.where(pixels > threshold, above, below)


@register_pipeline(
    "b", label="B", title="segmentation-first", color="#dd6b20",
    stages=(StageSpec("segmenter3", "segmenter", "segmenter", 3),
            StageSpec("roi_classifier", "classifier", "classifier", 2, "lesion")),
    sections=("classifier", "segmenter", "roi", "eval"), explain=("roi_classifier", "roi"),
    presets={"paper-b": "paper-b", "tiny-b": "tiny-b"}, base_preset="paper-b")
class SegmentationFirst(Pipeline):

    def train(self, ctx: RunContext) -> dict[str, Stage]:
        cfg, split = ctx.config, ctx.split
        seg_size = cfg.segmenter.image_size

        def seg_data():
            tr, va = ctx.subset(seg_size, split.train), ctx.subset(seg_size, split.val)
            return ((tr[0], class_masks(tr[1], tr[2]), tr[2]), (va[0], class_masks(va[1], va[2])))

        seg = train_stage(ctx, "segmenter3", SEGMENTER, cfg.segmenter, 3, seg_data)

        def crop_data():
            (tr_x, tr_y), val = self.training_crops(ctx, seg, split.train), self.training_crops(ctx, seg, split.val)
            return (tr_x, tr_y, tr_y), val

        roi = cfg.roi
        key = {"crops": roi.train_crops, "train_margin": roi.train_margin,
               "jitter": roi.jitter if roi.train_crops == "ground_truth_jitter" else None,
               "segmenter": seg.record["hash"] if roi.train_crops == "predicted" else None}
        clf = train_stage(ctx, "roi_classifier", CLASSIFIER, cfg.classifier, 2, crop_data, key_parts=key)
        return {"segmenter3": seg, "roi_classifier": clf}

    def training_crops(self, ctx: RunContext, seg: Stage, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Crops of the tumour images (labels 0/1) of ``ids`` from the configured mask source."""
        cfg = ctx.config
        labels = ctx.labels(ids)
        tumour = [i for i, lab in zip(ids, labels, strict=True) if lab != NORMAL]
        if cfg.roi.train_crops == "predicted":
            images, _, _ = ctx.subset(cfg.segmenter.image_size, tumour)
            maps = lesion_probability(ctx, seg, images, cfg.eval, tta=False)
        rng = np.random.default_rng(cfg.runtime.seed)
        size, crops = cfg.classifier.image_size, []
        for j, image_id in enumerate(tumour):
            image = ctx.original_image(image_id)
            if cfg.roi.train_crops == "predicted":
                mask = upsample(maps[j], image.shape) > TRAIN_CROP_THRESHOLD
                crops.append(crop_roi(image, mask, cfg.roi.train_margin, size)[0])
                continue
            mask = ctx.original_mask(image_id)
            box = roi_box(mask, cfg.roi.train_margin)
            if cfg.roi.train_crops == "ground_truth_jitter" and tight_box(mask) is not None:
                box = jitter_box(box, cfg.roi.jitter, image.shape[1], image.shape[0], rng)
            crops.append(crop_resize(image, box, size))
        tumour_labels = ctx.labels(tumour)
        return np.stack(crops) if crops else np.zeros((0, size, size), np.uint8), tumour_labels

    def explain_input(self, config: RunConfig, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The ROI crop (eqs. 9-12, inference margin rho) the B-vs-M classifier sees; the full image
        when the mask is empty."""
        return crop_roi(image, mask, config.roi.margin, config.classifier.image_size)[0]

    def infer(self, ctx: RunContext, stages: dict[str, Stage], ids: Sequence[str]) -> Inference:
        cfg = ctx.config
        images, _, _ = ctx.subset(cfg.segmenter.image_size, ids)
        maps = lesion_probability(ctx, stages["segmenter3"], images, cfg.eval)
        pixels = (maps > cfg.eval.mask_threshold).reshape(len(ids), -1).sum(1)
        present = pixels > lesion_pixel_threshold(cfg)
        crops, masks = [], []
        for j, image_id in enumerate(ids):
            image = ctx.original_image(image_id)
            if present[j]:
                mask = upsample(maps[j], image.shape) > cfg.eval.mask_threshold
            else:
                mask = np.zeros(image.shape, bool)
            masks.append(mask)
            crops.append(self.explain_input(cfg, image, mask))
        bm = classify(ctx, stages["roi_classifier"], np.stack(crops), cfg.eval)
        score = lesion_score(pixels, lesion_pixel_threshold(cfg))
        probs = np.stack([score * bm[:, 0], score * bm[:, 1], 1 - score], axis=1)
        pred = np.where(present, np.where(bm[:, 1] > bm[:, 0], MALIGNANT, BENIGN), NORMAL)
        return Inference(list(ids), probs, pred, masks)
