"""Checkpoints written in the background while training goes on: what reaches the disk is the state at the
time of saving, every file is whole when fit returns or raises, and fit ends holding the best weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harness.config import OptimConfig
from harness.engine import fit as engine
from harness.engine.device import DeviceInfo
from harness.errors import TrainingError
from harness.testing.hostile import failing_writes

CPU = DeviceInfo(torch.device("cpu"), amp=False, channels_last=False, pin_memory=False)


def test_the_writer_saves_the_state_of_the_moment_not_later_updates(tmp_path):
    weights = torch.zeros(1000)
    writer = engine.CheckpointWriter("toy")
    writer.save(({"w": weights}, tmp_path / "best.pt"), ({"model": {"w": weights}, "epoch": 1}, tmp_path / "last.pt"))
    weights += 1  # training goes on in place while the files are written
    writer.close()
    assert torch.equal(torch.load(tmp_path / "best.pt", weights_only=True)["w"], torch.zeros(1000))
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["model"]["w"], torch.zeros(1000))


def test_a_failed_write_is_raised_by_the_next_save_and_nothing_later_is_written(tmp_path):
    writer = engine.CheckpointWriter("toy")
    with failing_writes(engine, 100):
        writer.save(({"w": torch.zeros(1000)}, tmp_path / "best.pt"))
        with pytest.raises(TrainingError, match="stage toy: cannot write the checkpoint"):
            writer.save(({"w": torch.ones(10)}, tmp_path / "last.pt"))
    writer.close()
    assert not list(tmp_path.iterdir())


def _fit(workdir, epochs: int, lr: float, callbacks=()):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    model, loss = nn.Linear(4, 2), nn.CrossEntropyLoss()
    validate = lambda m: engine.run_validation(m, [(x, y)], loss, CPU, engine.classification_score,  # noqa: E731
                                               engine.balanced_accuracy_of)
    result = engine.fit(model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g),
                        loss_fn=loss, param_groups=[{"params": model.parameters(), "lr": lr}],
                        optim=OptimConfig(epochs=epochs, patience=2), validate=validate, info=CPU, stage="toy",
                        workdir=workdir, callbacks=callbacks)
    return model, result


@pytest.mark.parametrize("lr,best_epoch", [(0.1, 3), (0.05, 2), (1e-9, 1)])  # the best is the last epoch or not
def test_fit_returns_the_model_with_the_weights_of_best_pt(tmp_path, lr, best_epoch):
    model, result = _fit(tmp_path, epochs=3, lr=lr)
    assert result.best_epoch == best_epoch
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and [h["epoch"] for h in last["history"]] == [1, 2, 3]
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k
        assert best[k].device.type == "cpu"
    assert torch.equal(best["weight"], last["model"]["weight"]) is (best_epoch == 3)


def test_a_run_stopped_by_a_callback_leaves_whole_checkpoints_to_resume_from(tmp_path):
    class Stop(Exception):
        pass

    def stop_at_2(stage, record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        _fit(tmp_path / "work", epochs=4, lr=0.05, callbacks=[stop_at_2])
    assert torch.load(tmp_path / "work" / "last.pt", weights_only=True)["epoch"] == 2
    _, resumed = _fit(tmp_path / "work", epochs=4, lr=0.05)
    _, fresh = _fit(tmp_path / "fresh", epochs=4, lr=0.05)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in fresh.history]
