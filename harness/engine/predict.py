"""Inference with test-time augmentation over uint8 image arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.data.transforms import View, to_input
from harness.engine.device import DeviceInfo
from harness.engine.fit import autocast


@dataclass(frozen=True)
class Head:
    """One output of a model under TTA: which output, its activation, whether it is a dense map
    (mapped back with each view's inverse before averaging) and a reduction applied on the device.

    ``name`` says what the head computes (activation and reduction) in words; it is part of the key of
    cached outputs (:mod:`harness.engine.outputs`), so two heads that compute different things must
    have different names.
    """

    activation: Callable[[torch.Tensor], torch.Tensor]
    dense: bool
    select: int | None = None  # index into a tuple output (multi-task models); None = the output itself
    post: Callable[[torch.Tensor], torch.Tensor] | None = None
    name: str = ""


@torch.no_grad()
def predict_heads(model: nn.Module, images: np.ndarray, *, info: DeviceInfo, channels: int, views: list[View],
                  heads: Sequence[Head], batch_size: int = 16) -> list[np.ndarray]:
    """Mean of ``activation(output)`` over the TTA views for every head, in one forward pass per view.

    A multi-task model (pipeline C's U-Net++ with a classification head) is run once per view and
    batch for both of its outputs.
    """
    model.eval()
    model.to(info.device)
    if info.channels_last:  # as in training (engine.fit), so a stage just trained and one loaded compute alike
        model.to(memory_format=torch.channels_last)
    out: list[list[np.ndarray]] = [[] for _ in heads]
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(to_input(np.asarray(images[start:start + batch_size]), channels)).to(info.device)
        if info.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        acc: list[torch.Tensor] = []  # per head: sum of the activations over the views
        for v, (fwd, inv) in enumerate(views):
            with autocast(info):
                raw = model(fwd(x))
            for k, head in enumerate(heads):
                y = raw if head.select is None else raw[head.select]
                p = head.activation(y.float())
                if head.dense:
                    p = inv(p)
                if v == 0:
                    acc.append(p)
                else:
                    acc[k] = acc[k] + p
        for k, head in enumerate(heads):
            mean = acc[k] / len(views)
            out[k].append((head.post(mean) if head.post else mean).cpu().numpy())
    return [np.concatenate(o) if o else np.zeros((0,), dtype=np.float32) for o in out]


def softmax(t: torch.Tensor) -> torch.Tensor:
    return torch.softmax(t, dim=1)


def sigmoid(t: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(t)
