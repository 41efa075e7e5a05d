"""Plug-in for ``bench/bench_ray.py``: pipeline ``noop`` trains nothing and predicts Benign with an empty
mask for every image, so a study of it costs only what the study machinery adds (Ray, Tune, Optuna, the
scheduler, W&B, run directories) plus a trivial evaluation. Loaded by path (a study's ``plugins:``), in
the driver and in every Ray worker; not part of the harness's registry otherwise."""

from __future__ import annotations

import numpy as np

from harness.pipelines.base import Inference, Pipeline
from harness.pipelines.registry import register_pipeline


@register_pipeline("noop", label="N", title="no-op (benchmark)", stages=(), sections=("eval",),
                   presets={"noop": {"name": "noop", "runtime": {"threads": 1}}}, base_preset="noop")
class NoOp(Pipeline):
    def train(self, ctx):
        return {}

    def infer(self, ctx, stages, ids):
        probs = np.tile(np.array([[1.0, 0.0, 0.0]]), (len(ids), 1))
        return Inference(list(ids), probs, probs.argmax(1), [np.zeros(s, bool) for s in ctx.original_shapes(ids)])
