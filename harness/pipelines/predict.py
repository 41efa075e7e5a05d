"""Apply a trained pipeline to new images: ``harness predict RUN_DIR|STUDY_DIR IMAGES... --out DIR``.

The run's stages are rebuilt from its ``stages/*.json`` records (model from the run's config, weights
from the recorded checkpoint, never retrained) and the pipeline's own ``infer`` runs on the new PNGs,
so a prediction goes through exactly the code a run evaluates with: same resizing, TTA, thresholds,
ROI crops and gating. The inputs are copied into ``OUT/.inputs`` as a small dataset (no labels: the
images are unlabelled), whose decoded-image cache is built like any dataset's.

Outputs: ``predictions.csv`` (image_id, source, pred_label, pred_name, the three probabilities,
pred_pixels), ``masks/<id>.png`` at each image's original size and ``overlays/<id>.png``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness import CLASS_NAMES, NORMAL
from harness.config import RunConfig
from harness.data.io import inspect_png, read_image, write_bytes_atomic, write_mask
from harness.data.records import DatasetIndex, Record
from harness.data.splits import Split
from harness.engine.device import DeviceInfo, configure_torch, resolve_device
from harness.engine.store import StageStore
from harness.errors import ConfigError, DataError
from harness.pipelines.artifacts import load_stage, run_config
from harness.pipelines.context import RunContext
from harness.pipelines.registry import get_pipeline
from harness.pipelines.stages import Stage
from harness.rundir import RunDir

logger = logging.getLogger(__name__)

INPUTS = ".inputs"


def load_stages(run_dir: Path, config: RunConfig, info: DeviceInfo) -> dict[str, Stage]:
    """Every stage of the run's pipeline, rebuilt from its record (never retrained)."""
    out = {}
    for st in get_pipeline(config.pipeline).stages:
        record = RunDir.read_json(RunDir(run_dir).stages / f"{st.name}.json")
        out[st.name] = Stage(st.name, load_stage(run_dir, config, st, info.device), {**record, "cached": True})
    return out


def best_final_run(study_dir: Path) -> Path:
    """A study's best final configuration: the pipeline with the best mean first objective on test over
    its final runs (a ``levels`` study: its reference runs); its first seed's run directory."""
    import yaml

    from harness.tune.levels import REFERENCE, read_plan

    final = Path(study_dir) / "final"
    runs = sorted(p for p in final.iterdir() if RunDir(p).is_run_dir()) if final.is_dir() else []
    plan = read_plan(final)
    if plan:
        reference = {r["dir"] for r in plan["runs"] if r["variant"] == REFERENCE}
        runs = [r for r in runs if r.name in reference]
    if not runs:
        raise DataError(f"{final}: no finished final run; run the study to its end (harness study resume).")
    spec = yaml.safe_load((Path(study_dir) / "study.yaml").read_text()) or {}
    objective = ((spec.get("objectives") or [{}])[0] or {}).get("metric", "balanced_accuracy")
    from harness.metrics.registry import metric_direction

    sign = 1 if metric_direction(objective) == "max" else -1
    scores: dict[str, list[float]] = {}
    for r in runs:
        m = RunDir(r).read_metrics("test") if RunDir(r).metrics("test").is_file() else RunDir(r).read_metrics("val")
        scores.setdefault(str(RunDir(r).read_config().get("pipeline")), []).append(float(m.get(objective) or np.nan))
    best = max(scores, key=lambda p: sign * float(np.nanmean(scores[p])))
    chosen = next(r for r in runs if str(RunDir(r).read_config().get("pipeline")) == best)
    logger.info("study %s: predicting with %s (pipeline %s, best mean test %s)", study_dir, chosen, best, objective)
    return chosen


def _inputs(images: Sequence[Path], root: Path) -> DatasetIndex:
    """Copy the images into ``root/images`` as an unlabelled dataset index (ids from file names)."""
    if not images:
        raise ConfigError("give at least one PNG image to predict.")
    (root / "images").mkdir(parents=True, exist_ok=True)
    records, seen = [], set()
    for k, src in enumerate(images):
        src = Path(src)
        if not src.is_file():
            raise DataError(f"{src}: no such image file.")
        inspect_png(src)  # one-line error for anything that is not a readable PNG
        image_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in src.stem) or f"image{k}"
        if image_id in seen:
            image_id = f"{image_id}_{k}"
        seen.add(image_id)
        write_bytes_atomic(root / "images" / f"{image_id}.png", src.read_bytes())
        records.append(Record(image_id, f"images/{image_id}.png", None, NORMAL, image_id, k + 2))
    digest = hashlib.sha256("\n".join(f"{r.image_id}:{src}" for r, src in zip(records, images, strict=True))
                            .encode()).hexdigest()[:16]
    return DatasetIndex(root=root, records=tuple(records), metadata_hash=digest, has_patient_ids=False)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rgb = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    rgb[mask] = 0.55 * rgb[mask] + 0.45 * np.array([230, 60, 60], np.float32)
    return rgb.clip(0, 255).astype(np.uint8)


def predict(source: Path, images: Sequence[Path], out_dir: Path) -> pd.DataFrame:
    """Predict ``images`` with the run (or the study's best final run) at ``source``; see the module doc."""
    import cv2

    source = Path(source)
    run_dir = best_final_run(source) if (source / "study.yaml").is_file() else source
    config = run_config(run_dir)
    config = config.model_copy(update={"data": config.data.model_copy(update={"cache_dir": None})})
    info = resolve_device(config.runtime)
    configure_torch(config.runtime, info)
    stages = load_stages(run_dir, config, info)
    out_dir = Path(out_dir)
    root = out_dir / INPUTS
    if root.exists():
        shutil.rmtree(root)  # our own scratch dataset from an earlier call
    index = _inputs(images, root)
    ids = index.ids()
    ctx = RunContext(config=config, info=info, store=StageStore(root / "unused_store"), index=index,
                     split=Split(name="predict", train=(), val=tuple(ids)))
    inference = get_pipeline(config.pipeline).create().infer(ctx, stages, ids)
    rows = []
    for k, image_id in enumerate(inference.ids):
        mask = inference.masks[k]
        write_mask(out_dir / "masks" / f"{image_id}.png", mask)
        image = read_image(index.image_file(index.by_id()[image_id]))
        ok, buf = cv2.imencode(".png", cv2.cvtColor(_overlay(image, mask), cv2.COLOR_RGB2BGR))
        if ok:
            write_bytes_atomic(out_dir / "overlays" / f"{image_id}.png", buf.tobytes())
        label = int(inference.pred_labels[k])
        rows.append({"image_id": image_id, "source": str(Path(images[k]).resolve()), "pred_label": label,
                     "pred_name": CLASS_NAMES[label], "prob_benign": float(inference.probs[k, 0]),
                     "prob_malignant": float(inference.probs[k, 1]), "prob_normal": float(inference.probs[k, 2]),
                     "pred_pixels": int(mask.sum())})
    table = pd.DataFrame(rows)
    write_bytes_atomic(out_dir / "predictions.csv", table.to_csv(index=False).encode())
    logger.info("predicted %d image(s) with %s (pipeline %s) -> %s", len(rows), run_dir, config.pipeline, out_dir)
    return table
