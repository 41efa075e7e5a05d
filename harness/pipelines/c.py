"""Pipeline C, joint multi-task (the design the paper argues against, its section 1 and ref. [14]):
one U-Net++ with a classification head on its encoder (smp ``aux_params``), trained on all images
with the hybrid Dice/Focal/Lovasz mask loss plus ``joint.cls_weight`` x the class-weighted CE.

The image's class comes from the head (3 classes); the mask is gated by it (an image called Normal
gets an empty mask), so C obeys the same run-directory contract as A and B.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness import NORMAL
from harness.engine.predict import Head, sigmoid, softmax
from harness.pipelines.base import Inference, Pipeline, upsample
from harness.pipelines.context import RunContext
from harness.pipelines.registry import StageSpec, register_pipeline
from harness.pipelines.stages import JOINT, Stage, stage_outputs, train_stage

STAGE = "joint"
HEADS = (Head(sigmoid, dense=True, select=0, post=lambda p: p[:, 0], name="sigmoid[:, 0]"),
         Head(softmax, dense=False, select=1, name="softmax"))
"""Both outputs of the multi-task network in one pass per view: lesion probability map, class probabilities."""


@register_pipeline(
    "c", label="C", title="joint multi-task", color="#2f855a",
    stages=(StageSpec(STAGE, "joint", "joint", 3),), sections=("joint", "eval"), explain=(STAGE, "full"),
    presets={"paper-c": "paper-c", "tiny-c": "tiny-c"}, base_preset="paper-c")
class JointMultiTask(Pipeline):

    def train(self, ctx: RunContext) -> dict[str, Stage]:
        cfg, split = ctx.config.joint, ctx.split

        def data():
            tr, va = ctx.subset(cfg.image_size, split.train), ctx.subset(cfg.image_size, split.val)
            return (tr[0], (tr[1], tr[2]), tr[2]), (va[0], (va[1], va[2]))

        return {STAGE: train_stage(ctx, STAGE, JOINT, cfg, 3, data)}

    def infer(self, ctx: RunContext, stages: dict[str, Stage], ids: Sequence[str]) -> Inference:
        cfg, ev = ctx.config, ctx.config.eval
        images, _, _ = ctx.subset(cfg.joint.image_size, ids)
        maps, probs = stage_outputs(ctx, stages[STAGE], images, HEADS, ev)
        pred = probs.argmax(1)
        shapes = ctx.original_shapes(ids)
        masks = [upsample(maps[j], shapes[j]) > ev.mask_threshold if pred[j] != NORMAL else np.zeros(shapes[j], bool)
                 for j in range(len(ids))]
        return Inference(list(ids), probs, pred, masks)
