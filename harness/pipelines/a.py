"""Pipeline A, classification-first (paper 3.1): 3-class classifier, then a binary U-Net++ on the
images predicted Benign/Malignant; images predicted Normal get an empty mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import NORMAL
from harness.pipelines.base import Inference, Pipeline, upsample
from harness.pipelines.context import RunContext
from harness.pipelines.registry import StageSpec, register_pipeline
from harness.pipelines.stages import CLASSIFIER, SEGMENTER, Stage, classify, lesion_probability, train_stage


@register_pipeline(
    "a", label="A", title="classification-first", color="#2b6cb0",
    stages=(StageSpec("classifier3", "classifier", "classifier", 3),
            StageSpec("segmenter_binary", "segmenter", "segmenter", 1, "lesion")),
    sections=("classifier", "segmenter", "eval"), explain=("classifier3", "full"),
    presets={"paper-a": "paper-a", "tiny-a": "tiny-a"}, base_preset="paper-a")
class ClassificationFirst(Pipeline):

    def train(self, ctx: RunContext) -> dict[str, Stage]:
        cfg, split = ctx.config, ctx.split
        clf_size, seg_size = cfg.classifier.image_size, cfg.segmenter.image_size

        def clf_data():
            tr, va = ctx.subset(clf_size, split.train), ctx.subset(clf_size, split.val)
            return (tr[0], tr[2], tr[2]), (va[0], va[2])

        def seg_data():  # lesion cases only (paper 4.1); the sampler balances Benign vs Malignant
            tr, va = ctx.subset(seg_size, split.train), ctx.subset(seg_size, split.val)
            keep_tr, keep_va = tr[2] != NORMAL, va[2] != NORMAL
            return ((tr[0][keep_tr], tr[1][keep_tr], tr[2][keep_tr]), (va[0][keep_va], va[1][keep_va]))

        return {
            "classifier3": train_stage(ctx, "classifier3", CLASSIFIER, cfg.classifier, 3, clf_data),
            "segmenter_binary": train_stage(ctx, "segmenter_binary", SEGMENTER, cfg.segmenter, 1, seg_data),
        }

    def infer(self, ctx: RunContext, stages: dict[str, Stage], ids: Sequence[str]) -> Inference:
        cfg = ctx.config
        images, _, _ = ctx.subset(cfg.classifier.image_size, ids)
        probs = classify(ctx, stages["classifier3"], images, cfg.eval)
        pred = probs.argmax(1)
        lesion = np.flatnonzero(pred != NORMAL)
        seg_images, _, _ = ctx.subset(cfg.segmenter.image_size, [ids[int(i)] for i in lesion])
        shapes = ctx.original_shapes(ids)
        masks = [np.zeros(s, dtype=bool) for s in shapes]
        if len(lesion):
            maps = lesion_probability(ctx, stages["segmenter_binary"], seg_images, cfg.eval)
            for j, i in enumerate(lesion):
                masks[i] = upsample(maps[j], shapes[i]) > cfg.eval.mask_threshold
        return Inference(list(ids), probs, pred, masks)
