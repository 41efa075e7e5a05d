"""The one synthetic test image: ultrasound-like speckle with an elliptic lesion, and its PNG writer.

Every test double that needs pixels (paper-format datasets, BUSI trees, fake runs, benchmarks)
draws them with :func:`ultrasound_image`, so "what a test image looks like" is decided once.
The image is deliberately cheap and *not* realistic (that is :mod:`harness.data.synth`, a product
feature with its own tests); it only has the properties tests rely on:

- a smooth random coarse field, so two images differ in coarse structure (perceptual-hash
  duplicate grouping must not merge distinct images);
- multiplicative speckle, so PNGs do not compress to nothing (decode timings mean something);
- a hypoechoic (darker) lesion exactly where the returned mask is set, darker for Malignant,
  none for Normal, so a tiny model has something to learn in smoke tests.

Pixel formats (RGB, RGBA, 16-bit, 1-bit) are a property of the file, not of the drawing: they are
the ``mode`` of :func:`write_png`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from harness import NORMAL

# Lesion brightness relative to the tissue around it, by label (Benign, Malignant, Normal). A mask
# given for a Normal image (a deliberately wrong dataset) is drawn like a Benign lesion.
_ECHO = (0.45, 0.25, 0.45)
PNG_MODES = ("L", "I;16", "RGB", "RGBA", "1")


def ellipse_mask(shape: tuple[int, int], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """A filled, rotated ellipse near the centre of a ``shape`` (H, W) array, as bool.

    Semi-axes are 8-28 % of the side times ``scale`` but at least 2 px, so the mask is never empty
    even on a 20 px image; fake predictions use ``scale`` < 1 for small false blobs.
    """
    h, w = shape
    m = np.zeros(shape, np.uint8)
    cy, cx = int(rng.uniform(0.35, 0.65) * h), int(rng.uniform(0.35, 0.65) * w)
    ay = max(2, int(rng.uniform(0.08, 0.25) * h * scale))
    ax = max(2, int(rng.uniform(0.08, 0.28) * w * scale))
    cv2.ellipse(m, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def ultrasound_image(shape: tuple[int, int], label: int, rng: np.random.Generator, *,
                     mask: np.ndarray | None = None, lesion_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A gray uint8 ``shape`` (H, W) image and its bool lesion mask.

    ``label`` 0/1/2 = Benign/Malignant/Normal: a lesion (:func:`ellipse_mask`, ``lesion_scale``)
    for Benign and Malignant, an empty mask for Normal. ``mask`` puts the lesion exactly there
    instead, for tests that assert on mask geometry (e.g. BUSI boxes). Deterministic in ``rng``.
    """
    h, w = shape
    coarse = cv2.resize(rng.normal(0, 30, (6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    depth = np.linspace(1.0, 0.75, h, dtype=np.float32)[:, None]  # attenuation with depth
    image: np.ndarray = (95 + coarse) * depth * rng.gamma(4.0, 0.25, shape)  # multiplicative speckle, mean 1
    if mask is None:
        mask = ellipse_mask(shape, rng, lesion_scale) if label != NORMAL else np.zeros(shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != (h, w):
        raise ValueError(f"mask shape {mask.shape} differs from the image shape {(h, w)}.")
    image[mask] *= _ECHO[label]
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0)
    return image, mask


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write ``array`` (gray uint8, or already RGB/RGBA) as PNG in ``mode``; return the path.

    ``mode`` is one of :data:`PNG_MODES` (inferred from the array when None): the formats a real
    dataset mixes and :mod:`harness.data.io` must read alike. Gray becomes RGB with a darker green
    channel, so an RGB file is not secretly gray.
    """
    if mode is not None and mode not in PNG_MODES:
        raise ValueError(f"mode must be one of {PNG_MODES} or None, but got mode={mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if mode == "1":
        Image.fromarray(arr.astype(bool)).save(path)
        return path
    if mode == "I;16":
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr.astype(np.uint16)
        Image.fromarray(arr).save(path)
        return path
    if mode in ("RGB", "RGBA") and arr.ndim == 2:
        chans = [arr, np.clip(arr.astype(int) * 0.9, 0, 255).astype(np.uint8), arr]
        if mode == "RGBA":
            chans.append(np.full_like(arr, 255))
        arr = np.dstack(chans)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path
