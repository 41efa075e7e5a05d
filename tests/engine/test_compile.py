"""``runtime.compile``: fit trains a ``torch.compile`` of the model, keeps plain checkpoint keys, and falls back to
eager training with one warning line when compilation fails.

Dynamo's backends stand in for inductor (whose code generation takes ~25 s even for a toy model on this CPU;
``bench/bench_fit.py`` measures it): a counting ``eager`` backend proves the compiled module ran the steps, a
raising one plays a machine without a C compiler.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from torch._dynamo.backends.common import aot_autograd
from torch.utils.data import DataLoader, TensorDataset

from harness.config import OptimConfig
from harness.engine import fit as engine
from harness.engine.device import DeviceInfo

COMPILED = DeviceInfo(torch.device("cpu"), amp=False, channels_last=False, pin_memory=False, compile=True)
EAGER = DeviceInfo(torch.device("cpu"), amp=False, channels_last=False, pin_memory=False)


def _train(tmp_path, info: DeviceInfo) -> tuple[nn.Module, engine.FitResult]:
    """BatchNorm and dropout: a failed compilation attempt must leave neither statistics nor RNG draws behind."""
    torch.manual_seed(0)
    x = torch.randn(32, 6)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    loss = nn.CrossEntropyLoss()
    val = lambda m: engine.run_validation(m, [(x, y)], loss, info, engine.classification_score,  # noqa: E731
                                          engine.balanced_accuracy_of)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    result = engine.fit(model, loader, loss_fn=loss, param_groups=[{"params": model.parameters(), "lr": 0.05}],
                        optim=OptimConfig(epochs=2), validate=val, info=info, stage="toy", workdir=tmp_path)
    return model, result


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_compiled_training_runs_the_compiled_module_and_keeps_plain_keys(tmp_path, monkeypatch):
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(engine, "COMPILE_BACKEND", counting)
    model, result = _train(tmp_path / "compiled", COMPILED)
    assert graphs, "the training forward went through dynamo"
    eager, _ = _train(tmp_path / "eager", EAGER)
    for path in (result.checkpoint, tmp_path / "compiled" / "last.pt"):
        state = torch.load(path, weights_only=True)
        keys = set(state if path.name == "best.pt" else state["model"])
        assert keys == set(eager.state_dict()), "no _orig_mod. prefix: stored stages load compiled or not"
    for k, v in _weights(eager).items():
        assert torch.equal(model.state_dict()[k], v), k


def _no_compiler(gm, example_inputs):
    raise RuntimeError("Compiler: cc is not found.\nsecond line")


@pytest.mark.parametrize("fails", ["forward", "backward"])
def test_a_failed_compilation_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch, caplog, fails):
    """The backward graph compiles at the first backward pass, after the compiled forward ran (BatchNorm statistics
    updated, dropout drawn): the eager retry starts from the state before it, so training equals eager training."""
    backend = _no_compiler if fails == "forward" else aot_autograd(fw_compiler=lambda gm, _: gm.forward,
                                                                   bw_compiler=_no_compiler)
    torch._dynamo.reset()
    monkeypatch.setattr(engine, "COMPILE_BACKEND", backend)
    with caplog.at_level(logging.WARNING, logger="harness.engine.fit"):
        model, result = _train(tmp_path / "fallback", COMPILED)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "toy: torch.compile failed" in warnings[0] and "cc is not found" in warnings[0]
    assert result.epochs == 2
    eager, _ = _train(tmp_path / "eager", EAGER)
    for k, v in _weights(eager).items():
        assert torch.equal(model.state_dict()[k], v), f"{k}: the failed attempt left a trace"


@pytest.mark.parametrize("bad", [ValueError("shapes do not match")])
def test_a_model_error_is_not_hidden_by_the_fallback(tmp_path, monkeypatch, bad):
    class Broken(nn.Linear):
        def forward(self, x):
            raise bad

    torch._dynamo.reset()
    monkeypatch.setattr(engine, "COMPILE_BACKEND", "eager")
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    model = Broken(4, 2)
    with pytest.raises(ValueError, match="shapes do not match"):
        engine.fit(model, DataLoader(TensorDataset(x, y), batch_size=4), loss_fn=nn.CrossEntropyLoss(),
                   param_groups=[{"params": model.parameters(), "lr": 0.1}], optim=OptimConfig(epochs=1),
                   validate=lambda m: (0.0, 0.0), info=COMPILED, stage="broken", workdir=tmp_path)
