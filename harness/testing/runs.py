"""Fake RUN_DIRs: what ``harness run`` writes, without training, for report tests and benchmarks.

:func:`make_run` writes ``predictions.csv``, ``pred_masks/``, ``config.yaml``, ``metrics*.json``
and ``stages/*.json`` for one pipeline over a :mod:`harness.testing.datasets` dataset, with the
errors a real run makes: wrong classes, boundary errors, missed lesions (in pipeline A a lesion
called Normal gets no mask), false lesions on Normal images. Each row carries its image's patient;
with ``patient_correlation`` > 0 the images of a patient tend to share their errors, as views of one
lesion do. Metrics come from the product's own :func:`harness.metrics.run_metrics`, so a fake run
is internally consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness import NORMAL
from harness.config import RunConfig
from harness.metrics import run_metrics
from harness.metrics.segmentation import penalised_hd95, per_image
from harness.pipelines.registry import get_pipeline, pipeline_names
from harness.rundir import RunDir
from harness.testing.datasets import FakeImage, make_dataset
from harness.testing.images import ellipse_mask


def stages(pipeline: str) -> tuple[tuple[str, str], ...]:
    """(stage name, kind) of ``pipeline`` in run order, from the pipeline registry."""
    return tuple((st.name, st.kind) for st in get_pipeline(pipeline).stages)


def classifier_stage(pipeline: str) -> str:
    """The stage Grad-CAM explains (where a fake classifier checkpoint lives), from the registry."""
    explain = get_pipeline(pipeline).explain
    if explain is None:
        raise ValueError(f"pipeline {pipeline} names no stage to explain")
    return explain[0]


def _predict_mask(gt: np.ndarray, rng: np.random.Generator, quality: float, good: bool | None = None) -> np.ndarray:
    """A perturbed copy of ``gt``: shifted, dilated/eroded, or (1 - ``quality``) of the time a
    different blob that overlaps a little or not at all (``good`` given: decided by the caller)."""
    if not (rng.random() <= quality if good is None else good):
        return ellipse_mask(gt.shape, rng, 0.8)
    shift = rng.integers(-3, 4, size=2)
    m: np.ndarray = np.roll(gt, tuple(shift), axis=(0, 1)).astype(np.uint8)
    kernel = np.ones((int(rng.integers(1, 4)),) * 2, np.uint8)
    m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
    return m.astype(bool)


def _history(rng: np.random.Generator, epochs: int, kind: str) -> list[dict[str, float]]:
    """A plausible learning curve: losses decay, the validation metric rises and saturates."""
    rows = []
    for e in range(1, epochs + 1):
        base = math.exp(-e / (epochs / 3))
        metric = min(0.97, (0.55 if kind == "classifier" else 0.45) + 0.4 * (1 - base) + rng.normal(0, 0.015))
        rows.append({"epoch": e, "train_loss": 0.2 + 0.9 * base + rng.normal(0, 0.01),
                     "val_loss": 0.3 + 0.8 * base + 0.002 * e + rng.normal(0, 0.02),
                     "val_metric": metric, "lr": 1e-4 * (0.5 ** (e // 8)), "seconds": 1.0})
    return rows


def _predict(im: FakeImage, pipeline: str, rng: np.random.Generator, accuracy: float,
             seg_quality: float, like: tuple[bool, bool] | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """(predicted label, class probabilities, predicted mask) for one image, errors included;
    ``like`` = (label right, mask good) makes the image repeat another image's outcome."""
    wrong = [c for c in range(3) if c != im.label]
    right = rng.random() < accuracy if like is None else like[0]
    pred_label = im.label if right else int(rng.choice(wrong))
    logits = rng.normal(0, 1, 3)
    logits[pred_label] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum()
    lesion, called_lesion = im.label != NORMAL, pred_label != NORMAL
    if lesion and called_lesion:
        pred = _predict_mask(im.gt, rng, seg_quality, None if like is None else like[1])
    elif lesion:  # called Normal: a classification-gated pipeline (A, C) has no mask; B found nothing (mostly)
        gated = get_pipeline(pipeline).stages[0].kind != "segmenter"
        pred = np.zeros_like(im.gt) if gated or rng.random() < 0.7 else _predict_mask(im.gt, rng, 0.3)
    elif called_lesion:  # a false lesion on a Normal image
        pred = ellipse_mask(im.gt.shape, rng, 0.4)
    else:
        pred = np.zeros_like(im.gt)
    return pred_label, probs, pred


def _write_metrics(run_dir: RunDir, table: pd.DataFrame, pipeline: str) -> None:
    """``metrics.json`` (val) and ``metrics_<subset>.json`` through the real writer."""
    for subset in sorted(table["subset"].unique()):
        run_dir.write_metrics(subset, {**run_metrics(table[table["subset"] == subset]), "pipeline": pipeline,
                                       "subset": subset})


def _write_stages(run_dir: RunDir, pipeline: str, rng: np.random.Generator, seed: int, epochs: int,
                  checkpoints: dict[str, Path]) -> None:
    """``stages/<stage>.json`` per stage of the pipeline (registry), with a learning curve."""
    for stage, kind in stages(pipeline):
        history = _history(rng, epochs, kind)
        best = max(history, key=lambda r: r["val_metric"])
        run_dir.write_stage(stage, {
            "stage": stage, "kind": kind, "hash": f"{stage[:4]}{seed:08d}",
            "checkpoint": str(checkpoints.get(stage, run_dir.checkpoints / f"{stage}.pt")),
            "epochs": epochs, "best_epoch": best["epoch"], "best_metric": best["val_metric"],
            "metric_name": "balanced_accuracy" if kind == "classifier" else "dice",
            "seconds": float(epochs), "history": history})


def make_run(run_dir: Path, images: Sequence[FakeImage], pipeline: str, seed: int = 42, accuracy: float = 0.85,
             seg_quality: float = 0.85, test_fraction: float = 0.0, epochs: int = 12,
             checkpoints: dict[str, Path] | None = None, patient_correlation: float = 0.0,
             config: dict | None = None) -> Path:
    """Write a RUN_DIR for a registered ``pipeline`` evaluated on ``images``; return ``run_dir``.

    ``accuracy`` is the chance a label is right and ``seg_quality`` the chance a lesion's mask is
    a near miss rather than a different blob. With probability ``patient_correlation`` an image
    repeats the outcome (label right or wrong, mask good or bad) of its patient's first image.
    The last ``test_fraction`` of the images form the test subset, the rest val. ``checkpoints``
    maps stage names to state-dict paths; ``config`` holds RunConfig fields besides name, pipeline
    and seed (e.g. ``{"roi": {"margin": 0.3}}``).
    """
    if not 0 <= patient_correlation <= 1:
        raise ValueError(f"patient_correlation must be in [0, 1], but got patient_correlation={patient_correlation}.")
    if pipeline not in pipeline_names():
        raise ValueError(f"pipeline must be one of {pipeline_names()}, but got pipeline={pipeline!r}.")
    rng = np.random.default_rng(seed + 1000 * pipeline_names().index(pipeline))
    rd = RunDir(run_dir)
    n_test = int(round(test_fraction * len(images)))
    rows = []
    first_outcome: dict[str, tuple[bool, bool]] = {}
    for k, im in enumerate(images):
        patient = im.patient_id or im.image_id
        like = None  # without correlation: the random stream of independent images
        if patient_correlation:
            own = (bool(rng.random() < accuracy), bool(rng.random() <= seg_quality))
            first = first_outcome.setdefault(patient, own)
            like = first if rng.random() < patient_correlation else own
        pred_label, probs, pred = _predict(im, pipeline, rng, accuracy, seg_quality, like)
        rd.write_mask(im.image_id, pred)
        seg = per_image(pred, im.gt)
        rows.append({"subset": "test" if k >= len(images) - n_test else "val", "image_id": im.image_id,
                     "label": im.label, "pred_label": pred_label, "prob_benign": probs[0],
                     "prob_malignant": probs[1], "prob_normal": probs[2], **seg,
                     "hd95_penalised": penalised_hd95(seg["hd95"], im.gt.shape),
                     "gt_pixels": int(im.gt.sum()), "pred_pixels": int(pred.sum()),
                     "image_path": str(im.image_path), "mask_path": str(im.mask_path or ""), "patient_id": patient})
    table = pd.DataFrame(rows)
    rd.write_predictions(table)
    rd.write_config(RunConfig(**{**(config or {}), "name": run_dir.name, "pipeline": pipeline,
                                 "runtime": {**(config or {}).get("runtime", {}), "seed": seed}}))
    _write_metrics(rd, table, pipeline)
    _write_stages(rd, pipeline, rng, seed, epochs, checkpoints or {})
    return run_dir


def make_runs(root: Path, n_images: int = 30, seeds: Sequence[int] = (42,), size: tuple[int, int] = (128, 96),
              test_fraction: float = 0.0, images_per_patient: int | Sequence[int] = (1, 2, 3, 2),
              patient_correlation: float = 0.8) -> list[Path]:
    """A shared fake dataset in ``root/data`` (``size`` = (w, h)) and one A and one B run per seed
    in ``root/run_{a,b}_s<seed>``, A a little more accurate and B a little better at masks.

    Patients have 1-3 images (``images_per_patient``, cycled; period 4, so that the image count
    is not tied to the label, which cycles with period 3) whose outcomes are correlated
    (``patient_correlation``, see :func:`make_run`), as views of one lesion are in BUSI.
    """
    images = make_dataset(root / "data", n_images, size, seed=0, images_per_patient=images_per_patient).images
    runs = []
    for s in seeds:
        runs.append(make_run(root / f"run_a_s{s}", images, "a", seed=s, accuracy=0.86, seg_quality=0.8,
                             test_fraction=test_fraction, patient_correlation=patient_correlation))
        runs.append(make_run(root / f"run_b_s{s}", images, "b", seed=s, accuracy=0.8, seg_quality=0.9,
                             test_fraction=test_fraction, patient_correlation=patient_correlation))
    return runs
