"""Inference with test-time augmentation over uint8 image arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from harness.data.transforms import View, to_input
from harness.engine.device import DeviceInfo
from harness.engine.fit import autocast


@torch.no_grad()
def predict(
    model: nn.Module,
    images: np.ndarray,
    *,
    info: DeviceInfo,
    channels: int,
    views: list[View],
    activation: Callable[[torch.Tensor], torch.Tensor],
    dense: bool,
    batch_size: int = 16,
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Mean of ``activation(model(view(x)))`` over the TTA views, per batch.

    ``dense`` outputs (segmentation maps) are mapped back with each view's inverse before averaging;
    ``post`` reduces the averaged batch (e.g. probabilities -> lesion probability map) before it is
    moved to the CPU, so large maps are never stored at full channel depth.
    """
    model.eval()
    model.to(info.device)
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(to_input(np.asarray(images[start:start + batch_size]), channels)).to(info.device)
        if info.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        acc = None
        for fwd, inv in views:
            with autocast(info):
                p = activation(model(fwd(x)).float())
            if dense:
                p = inv(p)
            acc = p if acc is None else acc + p
        mean = acc / len(views)
        out.append((post(mean) if post else mean).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), dtype=np.float32)


def softmax(t: torch.Tensor) -> torch.Tensor:
    return torch.softmax(t, dim=1)


def sigmoid(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t)
