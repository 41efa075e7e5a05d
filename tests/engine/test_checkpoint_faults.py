"""Issue 12, items 26 and 9 (checkpoints): a cut or tampered checkpoint is named in one line and the stage is
trained again; a checkpoint that cannot be written is one TrainingError line with the previous one kept."""

from __future__ import annotations

import json
import logging
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from harness.cli import main
from harness.config import OptimConfig
from harness.engine import fit as engine
from harness.engine.device import DeviceInfo
from harness.engine.store import StageStore
from harness.errors import OutputError, TrainingError
from harness.testing.hostile import failing_writes

CPU = DeviceInfo(torch.device("cpu"), amp=False, channels_last=False, pin_memory=False)


def train(workdir: Path, epochs: int = 3):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g)
    model, loss = nn.Linear(4, 2), nn.CrossEntropyLoss()
    validate = lambda m: engine.run_validation(m, [(x, y)], loss, CPU, engine.classification_score,  # noqa: E731
                                               engine.balanced_accuracy_of)
    return engine.fit(model, loader, loss_fn=loss, param_groups=[{"params": model.parameters(), "lr": 0.05}],
                      optim=OptimConfig(epochs=epochs), validate=validate, info=CPU, stage="toy", workdir=workdir)


def _cut(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


@pytest.mark.parametrize("damage", ["cut-last", "garbage-last", "tampered-last", "cut-best"])
def test_a_damaged_resume_state_restarts_the_stage(tmp_path, caplog, damage):
    fresh = train(tmp_path / "fresh")
    work = tmp_path / "work"
    train(work, epochs=2)
    last, best = work / "last.pt", work / "best.pt"
    if damage == "cut-last":
        _cut(last)
    elif damage == "garbage-last":
        last.write_bytes(b"\x00" * 100)
    elif damage == "tampered-last":
        torch.save({"model": {"weight": torch.zeros(3)}}, last)
    else:
        _cut(best)
    with caplog.at_level(logging.WARNING, logger="harness.engine.fit"):
        result = train(work)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and lines[0].startswith(f"{last}: cannot resume from it (")
    assert lines[0].endswith("training stage toy from the start.") and "\n" not in lines[0]
    assert [h["val_metric"] for h in result.history] == [h["val_metric"] for h in fresh.history]
    assert result.best_metric == fresh.best_metric


def test_checkpoints_are_whole_or_absent_on_a_full_disk(tmp_path):
    work = tmp_path / "work"
    train(work, epochs=1)
    before = (work / "last.pt").read_bytes()
    with failing_writes(engine, 100), pytest.raises(TrainingError) as e:
        train(work, epochs=3)
    message = e.value.problems[0]
    assert message.startswith("stage toy: cannot write the checkpoint") and "No space left on device" in message
    assert "resumes from the last complete checkpoint" in message
    assert (work / "last.pt").read_bytes() == before and not list(work.glob("*.tmp"))
    assert train(work, epochs=3).epochs == 3  # and it resumes once there is space


def test_checkpoint_space_is_checked_before_training(tmp_path, monkeypatch):
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(OutputError, match=r"the checkpoints of stage toy needs about .* stage store on another disk"):
        train(tmp_path / "work")
    assert not list((tmp_path / "work").iterdir())


def test_checkpoint_bytes_counts_weights_and_adam_moments():
    model = nn.Linear(100, 10)  # 1010 float32 parameters
    weights = 1010 * 4
    assert engine.checkpoint_bytes(model) == weights + 2 * (weights + 2 * weights) + 64 * 1024


# --- the stage store -------------------------------------------------------------------------------------------


def test_damaged_stage_records_are_not_used(tmp_path, caplog):
    store = StageStore(tmp_path)
    d = store.dir("clf", "k")
    d.mkdir(parents=True)
    (d / "best.pt").write_bytes(b"x")
    good = {"checkpoint": "/elsewhere/best.pt", "best_metric": 0.5, "history": []}
    store.commit("clf", "k", good)
    assert store.lookup("clf", "k")["checkpoint"] == str((d / "best.pt").resolve())  # never outside its directory
    for bad in ([1], {"checkpoint": 5}, {**good, "best_metric": "high"}, {**good, "history": "x"}):
        store.commit("clf", "k", bad)  # type: ignore[arg-type]
        assert store.lookup("clf", "k") is None
    (d / "stage.json").write_bytes(b"\xff{")
    with caplog.at_level(logging.WARNING):
        assert store.lookup("clf", "k") is None
    assert "stage.json: unreadable stage record" in caplog.text


TINY = ["--set", "joint.image_size=32", "--set", "joint.optim.epochs=1", "--set", "joint.optim.batch_size=8",
        "--set", "runtime.threads=1"]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut", "tampered"])
def test_a_damaged_stored_stage_is_trained_again(tmp_path, make_dataset, caplog, capsys, damage):
    data = make_dataset(tmp_path / "ds", n=12, size=32)
    store = tmp_path / "store"
    args = ["run", "tiny-c", "--data", str(data), "--store", str(store), *TINY]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 0
    (checkpoint,) = store.glob("joint-*/best.pt")
    if damage == "cut":
        _cut(checkpoint)
    else:
        torch.save({"not": torch.zeros(1)}, checkpoint)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harness.engine.store"):
        assert main([*args, "--out", str(tmp_path / "r2")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    warnings = [r.getMessage() for r in caplog.records if r.name == "harness.engine.store"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{checkpoint.resolve()}: cannot be loaded (")
    assert warnings[0].endswith("training stage joint again.")
    run_info = json.loads((tmp_path / "r2" / "run.json").read_text())
    assert run_info["trained_stages"] == ["joint"]
    assert main([*args, "--out", str(tmp_path / "r3")]) == 0  # and the retrained stage is reused next time
    assert json.loads((tmp_path / "r3" / "run.json").read_text())["trained_stages"] == []


@pytest.mark.parametrize("content", [b"PK\x03\x04garbage", "tampered"])
def test_a_damaged_run_checkpoint_is_one_line_for_grad_cam(tmp_path, content):
    from harness.errors import DataError
    from harness.pipelines.artifacts import load_classifier
    from harness.testing.datasets import make_dataset
    from harness.testing.runs import classifier_stage, make_run

    run = make_run(tmp_path / "run", make_dataset(tmp_path / "data", 6, 32).images, "a")
    checkpoint = tmp_path / "x.pt"
    if content == "tampered":
        torch.save({"weight": torch.zeros(2)}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    record = run / "stages" / f"{classifier_stage('a')}.json"
    record.write_text(json.dumps(json.loads(record.read_text()) | {"checkpoint": str(checkpoint)}))
    with pytest.raises(DataError) as e:
        load_classifier(run)
    (line,) = e.value.problems
    assert f"cannot load the classifier3 checkpoint {checkpoint}" in line and "\n" not in line
