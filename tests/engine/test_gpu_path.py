"""The CUDA code path, checked without a GPU: what ``device: auto`` chooses on a CUDA machine, the cudnn flags,
the pinned training loader, and that fit really trains in channels_last under autocast when told to."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harness.config import OptimConfig, RuntimeConfig, load_run_config
from harness.data.datasets import LabelledImages
from harness.engine import fit as engine
from harness.engine.device import DeviceInfo, configure_torch, resolve_device
from harness.pipelines.stages import _loader


@pytest.mark.parametrize("cuda", [True, False])
def test_auto_settings_follow_the_device(cuda):
    info = resolve_device(RuntimeConfig(), cuda_available=cuda)
    assert info.is_cuda is cuda
    assert info.amp is cuda and info.channels_last is cuda and info.pin_memory is cuda
    assert info.grad_scaling is cuda, "float16 autocast on CUDA needs the GradScaler; CPU needs neither"
    assert not info.compile, "torch.compile is opt-in"
    assert resolve_device(RuntimeConfig(compile="auto"), cuda_available=cuda).compile is cuda
    assert resolve_device(RuntimeConfig(compile="on"), cuda_available=cuda).compile


def test_bfloat16_amp_needs_no_grad_scaling():
    info = DeviceInfo(torch.device("cpu"), amp=True, channels_last=False, pin_memory=False)
    assert info.amp_dtype == torch.bfloat16 and not info.grad_scaling


@pytest.fixture
def cudnn_flags():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.get_num_threads()
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.set_num_threads(saved[2])


@pytest.mark.usefixtures("cudnn_flags")
@pytest.mark.parametrize("deterministic", [False, True])
def test_configure_torch_sets_cudnn_flags_on_cuda(deterministic):
    rt = RuntimeConfig(deterministic=deterministic)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = deterministic, not deterministic
    configure_torch(rt, resolve_device(rt, cuda_available=True))
    assert torch.backends.cudnn.benchmark is not deterministic, "autotuned convolutions unless determinism is asked"
    assert torch.backends.cudnn.deterministic is deterministic


@pytest.mark.parametrize("cuda", [True, False])
def test_training_loader_pins_memory_on_cuda(cuda):
    ds = LabelledImages(np.zeros((8, 16, 16), np.uint8), np.arange(8) % 3)
    ctx = types.SimpleNamespace(config=load_run_config("tiny-a"), info=resolve_device(RuntimeConfig(),
                                                                                      cuda_available=cuda))
    assert _loader(ctx, ds, 4, None, seed=0, weighted=False).pin_memory is cuda  # type: ignore[arg-type]


def test_fit_trains_in_channels_last_under_autocast(tmp_path):
    """What fit does with a CUDA DeviceInfo, on CPU (bfloat16 autocast): the weights and every training input are
    channels_last and the forward pass runs under autocast; the weights stay float32."""
    info = DeviceInfo(torch.device("cpu"), amp=True, channels_last=True, pin_memory=True)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last), torch.is_autocast_enabled("cpu"), m.training)))
    x = torch.randn(16, 3, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long()
    loss = nn.CrossEntropyLoss()
    val = lambda m: engine.run_validation(m, [(x, y)], loss, info, engine.classification_score,  # noqa: E731
                                          engine.balanced_accuracy_of)
    engine.fit(model, DataLoader(TensorDataset(x, y), batch_size=8), loss_fn=loss,
               param_groups=[{"params": model.parameters(), "lr": 0.01}], optim=OptimConfig(epochs=1), validate=val,
               info=info, stage="gpu-path", workdir=tmp_path)
    train = [s for s in seen if s[2]]
    assert len(train) == 2 and all(s[0] and s[1] for s in seen), seen
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[0].weight.dtype == torch.float32
