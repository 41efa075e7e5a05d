"""Grad-CAM panels (paper section 3.3, Fig. 5-6): pipeline A's classifier on the full image,
pipeline B's on the lesion ROI crop.

The model and its exact input come from the pipelines package
(``harness.pipelines.artifacts.load_classifier`` / ``classifier_input``), passed in as a
``provider`` so the report never re-implements preprocessing. When the provider or a checkpoint
is missing the panel is skipped with a note, never an error.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from harness import BENIGN, CLASS_NAMES, MALIGNANT
from harness.report.figures import styled, subplots
from harness.report.loader import RunData

logger = logging.getLogger(__name__)

PROVIDER_MODULE = "harness.pipelines.artifacts"


class ClassifierProvider(Protocol):
    """What Grad-CAM needs from the pipelines package."""

    def load_classifier(self, run_dir: Path) -> tuple[Any, int, str, tuple[str, ...]]: ...

    def classifier_input(self, run_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class CamPanel:
    """One case: the displayed input, its heatmap in [0, 1] and what to write above it."""

    image_id: str
    display: np.ndarray
    cam: np.ndarray
    title: str


def default_provider() -> ClassifierProvider | None:
    """``harness.pipelines.artifacts`` when it offers both functions, else None."""
    try:
        mod = importlib.import_module(PROVIDER_MODULE)
    except ImportError:
        return None
    if not all(callable(getattr(mod, f, None)) for f in ("load_classifier", "classifier_input")):
        return None
    return mod


def target_layer(model):
    """``conv_head`` when the model has one (timm EfficientNet), else its last ``Conv2d``."""
    import torch

    head = getattr(model, "conv_head", None)
    if isinstance(head, torch.nn.Module):
        return head
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convs[-1]


def compute_cam(model, x: np.ndarray, target: int, layer=None) -> np.ndarray:
    """Grad-CAM heatmap (H x W in [0, 1]) of class ``target`` for one normalised HxWx3 input."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]
    with GradCAM(model=model, target_layers=[layer or target_layer(model)]) as cam:
        heat = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(int(target))])[0]
    return np.nan_to_num(heat.astype(np.float32))


def overlay(display: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Heatmap blended on the display image (RGB uint8), resized to the display size."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
    rgb = rgb[..., :3].astype(np.float32) / 255.0
    heat = cv2.resize(cam, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb, np.clip(heat, 0, 1), use_rgb=True, image_weight=0.55)


def pick_cases(predictions: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """Representative Benign and Malignant cases: the most confident correct one of each class,
    then the most confident error of each, then more correct ones, then more errors, up to ``n``."""
    les = predictions[predictions["label"].isin((BENIGN, MALIGNANT))].copy()
    if les.empty:
        return les
    prob_cols = [f"prob_{c.lower()}" for c in CLASS_NAMES]
    les["_conf"] = les[prob_cols].max(axis=1) if all(c in les for c in prob_cols) else 0.0
    les["_ok"] = les["pred_label"] == les["label"]
    les = les.sort_values(["_conf", "image_id"], ascending=[False, True], kind="stable")
    order = []
    for ok in (True, False):
        for c in (BENIGN, MALIGNANT):
            order += les[(les["label"] == c) & (les["_ok"] == ok)].index[:1].tolist()
    order += [i for i in les[les["_ok"]].index if i not in order]
    order += [i for i in les.index if i not in order]  # few correct cases: fill with errors
    return les.loc[order[:n]].drop(columns=["_conf", "_ok"])


def run_panels(run: RunData, provider: ClassifierProvider, n: int = 4) -> tuple[list[CamPanel], str]:
    """Grad-CAM panels of ``run``'s classifier and its input kind ("full" | "roi")."""
    model, _size, input_kind, class_names = provider.load_classifier(run.path)
    model.eval()
    layer = target_layer(model)
    panels = []
    for _, row in pick_cases(run.predictions, n).iterrows():
        x, display = provider.classifier_input(run.path, str(row["image_id"]))
        pred = int(row["pred_label"])
        target = pred if pred < len(class_names) else int(row["label"])  # a binary ROI classifier has no Normal
        cam = compute_cam(model, x, target, layer)
        true, called = CLASS_NAMES[int(row["label"])], CLASS_NAMES[pred]
        mark = "✓" if pred == int(row["label"]) else "✗"
        panels.append(CamPanel(str(row["image_id"]), display, cam,
                               f"{row['image_id']}: {true} → {called} {mark}\nGrad-CAM of {class_names[target]}"))
    return panels, input_kind


@styled
def gradcam_figure(panels: list[CamPanel], title: str):
    """Pairs of (input, Grad-CAM overlay), two cases per row."""
    cols = 4 if len(panels) > 1 else 2
    rows = int(np.ceil(2 * len(panels) / cols))
    fig, axes = subplots(cols, rows, w=2.6, h=3.0)
    for ax in axes.ravel():
        ax.axis("off")
    for k, p in enumerate(panels):
        a_img, a_cam = axes.ravel()[2 * k], axes.ravel()[2 * k + 1]
        a_img.imshow(p.display, cmap="gray" if p.display.ndim == 2 else None)
        head, cam_title = p.title.split("\n", 1) if "\n" in p.title else (p.title, "Grad-CAM")
        a_img.set_title(head, fontsize=8, fontweight="normal")
        a_cam.imshow(overlay(p.display, p.cam))
        a_cam.set_title(cam_title, fontsize=8, fontweight="normal")
    fig.suptitle(title, fontsize=10, fontweight="bold")
    fig.tight_layout()
    return fig


def gradcam_figures(groups: dict[str, list[RunData]], provider: ClassifierProvider | None,
                    n: int = 4) -> tuple[dict[str, Any], list[str]]:
    """{pipeline: Figure} for the first run of each pipeline, and notes on what was skipped."""
    if provider is None:
        return {}, [f"Grad-CAM skipped: {PROVIDER_MODULE} (load_classifier, classifier_input) is not available yet."]
    figs, notes = {}, []
    for p, runs in groups.items():
        if not runs:
            continue
        run = runs[0]
        try:
            panels, kind = run_panels(run, provider, n)
        except Exception as e:  # noqa: BLE001 - a missing/incompatible checkpoint must not stop the report
            reason = " ".join(str(getattr(e, "problems", [str(e)])[0]).split())
            reason = reason if len(reason) <= 240 else reason[:237] + "..."
            notes.append(f"Grad-CAM skipped for {run.name} (pipeline {p}): {reason}")
            logger.warning(notes[-1])
            continue
        if not panels:
            notes.append(f"Grad-CAM: no Benign or Malignant image in {run.name}.")
            continue
        where = "lesion ROI crops" if kind == "roi" else "full images"
        figs[p] = gradcam_figure(panels, f"Pipeline {p} ({run.name}): classifier on {where}")
    return figs, notes
