"""The fit loop: early stopping, non-finite loss, resume, callbacks, device choice."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harness.config import OptimConfig, RuntimeConfig
from harness.engine import fit as engine
from harness.engine.device import DeviceInfo, resolve_device
from harness.errors import ConfigError, TrainingError

CPU = DeviceInfo(torch.device("cpu"), amp=False, channels_last=False, pin_memory=False)


def problem(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g), (x, y)


def validator(data, loss):
    x, y = data
    return lambda m: engine.run_validation(m, [(x, y)], loss, CPU, engine.classification_score,
                                           engine.balanced_accuracy_of)


def train(tmp_path, epochs=5, callbacks=(), model=None, lr=0.05, patience=15):
    torch.manual_seed(0)
    loader, data = problem()
    model = model or nn.Linear(4, 2)
    loss = nn.CrossEntropyLoss()
    return model, engine.fit(model, loader, loss_fn=loss, param_groups=[{"params": model.parameters(), "lr": lr}],
                             optim=OptimConfig(epochs=epochs, patience=patience), validate=validator(data, loss),
                             info=CPU, stage="toy", workdir=tmp_path, callbacks=callbacks)


def test_learns_and_saves_plain_state_dict(tmp_path):
    seen = []
    model, res = train(tmp_path, callbacks=[lambda stage, rec: seen.append((stage, rec["epoch"]))])
    assert res.best_metric > 0.9 and res.epochs == 5
    assert seen == [("toy", e) for e in range(1, 6)]
    state = torch.load(res.checkpoint, weights_only=True)
    assert set(state) == {"weight", "bias"}


def test_early_stopping_on_patience(tmp_path):
    _, res = train(tmp_path, epochs=50, lr=1e-9, patience=2)  # nothing improves after epoch 1
    assert res.stopped_early and res.epochs == 3 and res.best_epoch == 1


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
    class Exploding(nn.Linear):
        calls = 0

        def forward(self, x):
            Exploding.calls += 1
            out = super().forward(x)
            return out * math.inf if Exploding.calls > 6 else out  # 4 train steps + 1 val pass, then NaN

    with pytest.raises(TrainingError) as err:
        train(tmp_path, model=Exploding(4, 2))
    msg = err.value.problems[0]
    assert "stage toy" in msg and "epoch 2" in msg and "best checkpoint so far kept" in msg
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()


def test_resume_continues_from_last_epoch(tmp_path):
    _, first = train(tmp_path, epochs=2)
    model, resumed = train(tmp_path, epochs=4)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == first.history[:2]
    _, fresh = train(tmp_path / "fresh", epochs=4)
    assert [h["val_metric"] for h in fresh.history] == pytest.approx([h["val_metric"] for h in resumed.history])


def test_callback_can_stop_training(tmp_path):
    class Stop(Exception):
        pass

    def cb(stage, rec):
        if rec["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(tmp_path, callbacks=[cb])


def test_device_auto_picks_cuda_with_amp_and_channels_last():
    info = resolve_device(RuntimeConfig(), cuda_available=True)
    assert info.device.type == "cuda" and info.amp and info.channels_last and info.pin_memory
    assert info.amp_dtype == torch.float16
    cpu = resolve_device(RuntimeConfig(), cuda_available=False)
    assert cpu.device.type == "cpu" and not cpu.amp and not cpu.channels_last and not cpu.pin_memory
    forced = resolve_device(RuntimeConfig(amp="off", channels_last="off"), cuda_available=True)
    assert not forced.amp and not forced.channels_last
    with pytest.raises(ConfigError, match="runtime.device=cuda"):
        resolve_device(RuntimeConfig(device="cuda"), cuda_available=False)


def test_amp_and_channels_last_path_runs_on_cpu(tmp_path):
    """The GPU code path (autocast + channels_last + GradScaler off for bf16) runs on CPU with bf16."""
    info = DeviceInfo(torch.device("cpu"), amp=True, channels_last=True, pin_memory=False)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(16, 3, 8, 8)
    y = (x.mean((1, 2, 3)) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    loss = nn.CrossEntropyLoss()
    val = lambda m: engine.run_validation(m, [(x, y)], loss, info, engine.classification_score,  # noqa: E731
                                          engine.balanced_accuracy_of)
    res = engine.fit(model, loader, loss_fn=loss, param_groups=[{"params": model.parameters(), "lr": 0.01}],
                     optim=OptimConfig(epochs=2), validate=val, info=info, stage="amp", workdir=tmp_path)
    assert res.epochs == 2 and math.isfinite(res.history[-1]["train_loss"])
