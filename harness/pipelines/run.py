"""`run_trial`: train what a config needs, evaluate, write the run directory.

The same function serves `harness run`, a Ray Tune trial and a W&B agent, for every registered
pipeline. The files it writes are the run-directory contract of :mod:`harness.rundir`; stage
checkpoints live in the stage store (``RUN_DIR/checkpoints`` unless a shared store is given).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from harness.config import RunConfig
from harness.engine.device import configure_torch, release_memory, resolve_device
from harness.engine.fit import EpochCallback, show_progress
from harness.manifest import write_run_manifest
from harness.metrics import run_metrics
from harness.metrics.segmentation import penalised_hd95, per_image
from harness.pipelines.base import Inference, create_pipeline
from harness.pipelines.context import RunContext, prepare
from harness.rundir import PREDICTION_COLUMNS, RunDir

logger = logging.getLogger(__name__)

__all__ = ["PREDICTION_COLUMNS", "TrialResult", "evaluate", "run_trial"]


@dataclass
class TrialResult:
    """What a run returns to its caller (CLI, Ray trial, W&B agent)."""

    run_dir: Path
    metrics: dict[str, float | str]  # the metrics plus their "pipeline" and "subset"
    test_metrics: dict[str, float | str] | None
    stages: dict[str, dict[str, Any]]
    seconds: float
    trained_stages: list[str] = field(default_factory=list)


def evaluate(ctx: RunContext, inference: Inference, subset: str, out_dir: Path) -> pd.DataFrame:
    """Per-image table at the original image size (with each image's patient, the report's
    statistical unit); writes the predicted masks as PNG."""
    rows = []
    by_id = ctx.index.by_id()
    run_dir = RunDir(out_dir)
    for k, image_id in enumerate(inference.ids):
        rec = by_id[image_id]
        gt = ctx.original_mask(image_id)
        pred = inference.masks[k]
        run_dir.write_mask(image_id, pred)
        seg = per_image(pred, gt)
        mask_file = ctx.index.mask_file(rec)
        rows.append({
            "subset": subset, "image_id": image_id, "label": rec.label, "pred_label": int(inference.pred_labels[k]),
            "prob_benign": float(inference.probs[k, 0]), "prob_malignant": float(inference.probs[k, 1]),
            "prob_normal": float(inference.probs[k, 2]),
            **{m: seg[m] for m in ("dice", "iou", "precision", "recall", "specificity", "hd95")},
            "hd95_penalised": penalised_hd95(seg["hd95"], gt.shape),
            "gt_pixels": int(gt.sum()), "pred_pixels": int(pred.sum()),
            "image_path": str(ctx.index.image_file(rec).resolve()),
            "mask_path": str(mask_file.resolve()) if mask_file else "", "patient_id": rec.patient_id,
        })
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def run_trial(config: RunConfig, out_dir: Path, *, data_dir: Path | None = None, store_root: Path | None = None,
              callbacks: Sequence[EpochCallback] = (), progress: bool | None = None,
              subsets: Sequence[str] = ("val", "test"), check_data: bool = True,
              provenance: Mapping[str, Any] | None = None) -> TrialResult:
    """Train (or reuse) every stage of ``config.pipeline`` and evaluate it; see the module docstring.

    ``subsets`` limits evaluation (a study's search trials evaluate ``val`` only: select on
    validation, report on test in the final runs). ``provenance`` goes into the run's
    ``manifest.json`` (:mod:`harness.manifest`), e.g. the study trial it belongs to.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    final_dir = RunDir(out_dir)
    created = not out_dir.exists()
    run_dir = final_dir.staging()  # a failed run leaves out_dir's previous outputs as they were
    try:
        run_dir.write_config(config)
        info = resolve_device(config.runtime)
        configure_torch(config.runtime, info)
        show = show_progress(config.runtime.progress) if progress is None else progress
        ctx = prepare(config, info, Path(store_root) if store_root else final_dir.checkpoints, data_dir=data_dir,
                      callbacks=callbacks, progress=show, check_data=check_data)
        write_run_manifest(run_dir.path, ctx, subsets=tuple(subsets), store=ctx.store.root, provenance=provenance)
        pipeline = create_pipeline(config.pipeline)
        stages = pipeline.train(ctx)
        for name, stage in stages.items():
            run_dir.write_stage(name, stage.record)

        results: dict[str, dict[str, float | str]] = {}
        tables = []
        for subset, ids in (("val", ctx.split.val), ("test", ctx.split.test)):
            if not ids or subset not in subsets:
                continue
            table = evaluate(ctx, pipeline.infer(ctx, stages, list(ids)), subset, run_dir.path)
            tables.append(table)
            metrics: dict[str, float | str] = {**run_metrics(table), "pipeline": config.pipeline, "subset": subset}
            results[subset] = metrics
            run_dir.write_metrics(subset, metrics)
        run_dir.write_predictions(pd.concat(tables))
        if info.is_cuda:  # a full gc.collect costs ~0.5 s with torch, timm and smp loaded; CPU memory is freed by
            release_memory()  # reference counting when the stages go out of scope
        seconds = time.perf_counter() - t0
        run_dir.write_run_info({
            "seconds": seconds, "trained_stages": [n for n, s in stages.items() if not s.cached],
            "device": str(info.device), "threads": torch.get_num_threads(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        final_dir.publish(run_dir)
    except BaseException:
        shutil.rmtree(run_dir.path, ignore_errors=True)
        if created and not any(out_dir.iterdir()):  # e.g. a dataset that failed its check: no empty run dir
            out_dir.rmdir()
        raise
    logger.info("run %s (pipeline %s) done in %.1fs: balanced accuracy %.3f, lesion Dice %.3f -> %s", config.name,
                config.pipeline, seconds, results["val"].get("balanced_accuracy", np.nan),
                results["val"].get("dice_mean", np.nan), out_dir)
    return TrialResult(run_dir=out_dir, metrics=results["val"], test_metrics=results.get("test"),
                       stages={n: s.record for n, s in stages.items()}, seconds=seconds,
                       trained_stages=[n for n, s in stages.items() if not s.cached])
