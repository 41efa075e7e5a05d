"""Pretrained ImageNet weights: from the hub when online, a local file when given, else one clear line."""

from __future__ import annotations

import contextlib
import os
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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers within ``timeout`` seconds, asked the way the download will be.

    A HEAD request to huggingface_hub's configured endpoint (``HF_ENDPOINT``, e.g. a mirror) through
    huggingface_hub's own HTTP session, so ``HTTPS_PROXY``/``NO_PROXY`` and a client factory the user
    installed apply; any HTTP answer counts. ``HF_HUB_OFFLINE=1`` means no. Keeps an offline machine
    from waiting through the hub's retries.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # noqa: BLE001 - requests/httpx raise their own connection, proxy and timeout errors
        return False
    return True


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
