"""Pretrained ImageNet weights: from the hub when online, a local file when given, else one clear line."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from harness.errors import ConfigError

T = TypeVar("T")

WEIGHTS_DIR_ENV = "HARNESS_WEIGHTS_DIR"


def local_weights(name: str) -> Path | None:
    """``$HARNESS_WEIGHTS_DIR/<name>.pth|.pt|.safetensors`` if such a file exists."""
    root = os.environ.get(WEIGHTS_DIR_ENV)
    if not root:
        return None
    for ext in (".pth", ".pt", ".bin", ".safetensors"):
        path = Path(root) / f"{name}{ext}"
        if path.is_file():
            return path
    return None


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A 3-second TCP probe, so that an offline machine fails at once instead of after retries."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    import huggingface_hub.constants as hc

    old = hc.HF_HUB_OFFLINE
    hc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hc.HF_HUB_OFFLINE = old


def with_pretrained(build: Callable[[bool], T], field: str, name: str) -> T:
    """Call ``build(pretrained=True)``; turn a failed download into one actionable line.

    Offline, only the local hub cache is tried (no retry loop); online, the hub as usual.
    """
    try:
        if hub_reachable():
            return build(True)
        with _hub_offline():
            return build(True)
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        raise ConfigError(
            f"{field}.pretrained=true but the ImageNet weights of {name} could not be loaded "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else 'no detail'}). "
            f"Connect to the internet once (weights are cached), put the file at "
            f"${WEIGHTS_DIR_ENV}/{name}.pth, or set {field}.pretrained=false."
        ) from None
