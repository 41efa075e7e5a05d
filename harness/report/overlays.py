"""Qualitative segmentation examples (paper Fig. 19/28): best, median and worst lesion images of a
run by Dice, the image with the ground-truth contour in green and the prediction in red."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.data.io import read_image, read_mask
from harness.errors import DataError
from harness.metrics.end_to_end import is_lesion
from harness.report.figures import styled, subplots
from harness.report.loader import RunData

logger = logging.getLogger(__name__)

GT_COLOR = (56, 200, 90)  # green
PRED_COLOR = (230, 50, 50)  # red


@dataclass(frozen=True)
class Example:
    """One chosen image: why it was chosen and its prediction row."""

    role: str  # "best", "median", "worst"
    row: pd.Series


def pick_examples(predictions: pd.DataFrame) -> list[Example]:
    """Best, median and worst lesion image by Dice (ties: first by image_id)."""
    les = predictions[is_lesion(predictions["label"].to_numpy()) & predictions["dice"].notna()]
    if les.empty:
        return []
    les = les.sort_values(["dice", "image_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    picks = {"best": 0, "median": len(les) // 2, "worst": len(les) - 1}
    return [Example(role, les.iloc[i]) for role, i in picks.items()]


def draw_contours(image: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None) -> np.ndarray:
    """RGB uint8 image with the contours of ``gt`` (green) and ``pred`` (red) drawn on it."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image[..., :3].copy()
    thickness = max(1, round(max(image.shape[:2]) / 200))
    for mask, color in ((gt, GT_COLOR), (pred, PRED_COLOR)):
        if mask is None or not mask.any():
            continue
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, color, thickness)
    return rgb


def load_example(run: RunData, row: pd.Series) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(image, gt mask, predicted mask) of one prediction row; masks None when their file is absent."""
    image = read_image(Path(row["image_path"]))
    gt = read_mask(Path(row["mask_path"])) if str(row.get("mask_path") or "") else np.zeros(image.shape[:2], bool)
    pred_path = run.path / "pred_masks" / f"{row['image_id']}.png"
    pred = read_mask(pred_path) if pred_path.exists() else None
    for name, m in (("ground-truth", gt), ("predicted", pred)):
        if m is not None and m.shape != image.shape[:2]:
            raise DataError(f"{row['image_id']}: {name} mask {m.shape} differs from image {image.shape[:2]}.")
    return image, gt, pred


@styled
def overlay_figure(run: RunData):
    """Three panels (best/median/worst) for ``run``; None when nothing can be shown."""
    examples = pick_examples(run.predictions)
    if not examples:
        return None
    fig, axes = subplots(len(examples), w=3.3, h=3.3)
    shown = 0
    for ax, ex in zip(axes[0], examples, strict=True):
        ax.axis("off")
        try:
            image, gt, pred = load_example(run, ex.row)
        except (DataError, OSError, KeyError) as e:
            msg = e.problems[0] if isinstance(e, DataError) else str(e)
            logger.warning("overlay of %s skipped: %s", ex.row["image_id"], msg)
            ax.text(0.5, 0.5, "image not readable", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.imshow(draw_contours(image, gt, pred))
        true = CLASS_NAMES[int(ex.row["label"])]
        predicted = CLASS_NAMES[int(ex.row["pred_label"])]
        ax.set_title(f"{ex.role}: Dice {ex.row['dice']:.3f}\n{ex.row['image_id']}  ({true} → {predicted})",
                     fontsize=8.5, fontweight="normal")
        shown += 1
    if not shown:
        import matplotlib.pyplot as plt

        plt.close(fig)
        return None
    fig.suptitle(f"Pipeline {run.label} ({run.name}): ground truth green, prediction red", fontsize=9.5)
    fig.tight_layout()
    return fig
