"""Device choice and run-wide torch settings, decided in one place per run."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from harness.config import RuntimeConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine needs to know about where it computes."""

    device: torch.device
    amp: bool
    channels_last: bool
    pin_memory: bool
    compile: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype:
        return torch.float16 if self.is_cuda else torch.bfloat16

    @property
    def grad_scaling(self) -> bool:
        """float16 AMP needs loss scaling against gradient underflow; bfloat16 has float32's range and does not."""
        return self.amp and self.amp_dtype == torch.float16


def resolve_device(rt: RuntimeConfig, cuda_available: bool | None = None) -> DeviceInfo:
    """CUDA when present (``device: auto``), else CPU; AMP, channels_last and pinned host memory follow
    the device (``auto``), and so does ``torch.compile`` when ``runtime.compile`` is ``auto``.

    ``cuda_available`` is injectable so the GPU decision is testable on a CPU machine.
    """
    has_cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if rt.device == "cuda" and not has_cuda:
        from harness.errors import ConfigError

        raise ConfigError("runtime.device=cuda but no CUDA device is visible; use runtime.device=auto or cpu.")
    use_cuda = rt.device == "cuda" or (rt.device == "auto" and has_cuda)
    device = torch.device("cuda") if use_cuda else torch.device("cpu")

    def auto(flag: str) -> bool:
        return use_cuda if flag == "auto" else flag == "on"

    return DeviceInfo(device=device, amp=auto(rt.amp), channels_last=auto(rt.channels_last), pin_memory=use_cuda,
                      compile=auto(rt.compile))


def configure_torch(rt: RuntimeConfig, info: DeviceInfo) -> None:
    """Seeds, thread count and cudnn flags: the single place a run touches torch's global state."""
    seed_everything(rt.seed)
    if info.is_cuda:
        torch.backends.cudnn.benchmark = not rt.deterministic
        torch.backends.cudnn.deterministic = rt.deterministic
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = rt.threads or max(1, cores)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    logger.debug("device=%s amp=%s channels_last=%s compile=%s threads=%d", info.device, info.amp,
                 info.channels_last, info.compile, torch.get_num_threads())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def release_memory() -> None:
    """Free cached GPU memory between trials/stages."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
