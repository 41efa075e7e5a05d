"""Lesion-centred ROI crop of Pipeline B (paper eqs. 9-12). Pure numpy, no I/O.

Box convention: ``(x_min, y_min, x_max, y_max)`` with *exclusive* max, so the crop is
``image[y_min:y_max, x_min:x_max]``. The tight box of a mask is therefore
``x_max = last lesion column + 1``; with this convention ``x_max - x_min`` is the lesion width the
paper multiplies by rho, and eqs. 10/12 clip at ``W``/``H`` exactly as written.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def tight_box(mask: np.ndarray) -> Box | None:
    """Tight bounding box of the non-zero pixels of a 2-D mask, or None when the mask is empty."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, but got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def expand_box(box: Box, rho: float, width: int, height: int) -> Box:
    """Eqs. 9-12: add floor(rho * box side) on each side, clipped to the image."""
    if rho < 0:
        raise ValueError(f"rho must be >= 0, but got rho={rho}")
    x0, y0, x1, y1 = box
    dx = int(np.floor(rho * (x1 - x0)))
    dy = int(np.floor(rho * (y1 - y0)))
    return max(0, x0 - dx), max(0, y0 - dy), min(width, x1 + dx), min(height, y1 + dy)


def roi_box(mask: np.ndarray, rho: float) -> Box:
    """The crop box for ``mask``: expanded tight box, or the full image when the mask is empty."""
    h, w = mask.shape
    box = tight_box(mask)
    if box is None:
        return 0, 0, w, h
    return expand_box(box, rho, w, h)


def jitter_box(box: Box, amount: float, width: int, height: int, rng: np.random.Generator) -> Box:
    """Shift each side by up to ``amount`` x the box side (uniform), clipped, never empty.

    Used for the ``ground_truth_jitter`` crop source: it imitates the boundary errors of a predicted
    mask without training on the segmenter's own outputs.
    """
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d = rng.uniform(-amount, amount, size=4) * np.array([bw, bh, bw, bh])
    nx0 = int(np.clip(round(x0 + d[0]), 0, width - 1))
    ny0 = int(np.clip(round(y0 + d[1]), 0, height - 1))
    nx1 = int(np.clip(round(x1 + d[2]), nx0 + 1, width))
    ny1 = int(np.clip(round(y1 + d[3]), ny0 + 1, height))
    return nx0, ny0, nx1, ny1


def crop_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Crop ``image`` (H, W[, C]) to ``box`` and resize to ``size`` x ``size``."""
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    if crop.size == 0:
        raise ValueError(f"empty crop box {box} for image of shape {image.shape}")
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


def crop_roi(image: np.ndarray, mask: np.ndarray, rho: float, size: int) -> tuple[np.ndarray, Box]:
    """Pipeline B's classifier input: ROI of ``mask`` cropped from ``image`` and resized.

    ``mask`` must have the image's height and width (predicted masks are resized back to the
    original image size first). Empty mask -> the full image, as in the paper.
    """
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape[:2]} differs from image shape {image.shape[:2]}")
    box = roi_box(mask, rho)
    return crop_resize(image, box, size), box
