"""One fit loop for every stage: AdamW with parameter groups, ReduceLROnPlateau on the stage's
validation metric, early stopping, best/last checkpoints (resumable), per-epoch callbacks, and an optional
``torch.compile`` of the training forward pass."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harness.config import OptimConfig
from harness.data.output import require_free_space
from harness.engine.device import DeviceInfo
from harness.errors import TrainingError, one_line
from harness.metrics import get_metric
from harness.metrics.classification import N_CLASSES
from harness.metrics.segmentation import dice_from_counts

logger = logging.getLogger(__name__)

EpochCallback = Callable[[str, dict[str, Any]], None]
"""Called after every epoch with (stage name, epoch record); may raise to stop the run."""

Validator = Callable[[nn.Module], tuple[float, float]]
"""model -> (validation loss, validation metric; higher is better)."""


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs: int
    seconds: float
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def show_progress(setting: str) -> bool:
    return setting == "on" or (setting == "auto" and sys.stderr.isatty())


def _to_device(batch: Any, info: DeviceInfo, image: bool) -> Any:
    if isinstance(batch, (tuple, list)):  # multi-task targets, e.g. (mask, label)
        return tuple(_to_device(b, info, image) for b in batch)
    batch = batch.to(info.device, non_blocking=info.pin_memory)
    if image and info.channels_last and batch.ndim == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def as_float(out: Any) -> Any:
    """Model output(s) in float32 (AMP computes in half precision); tuples for multi-task models."""
    return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


def autocast(info: DeviceInfo):
    return torch.autocast(device_type=info.device.type, dtype=info.amp_dtype, enabled=info.amp)


class _Writes:
    """A file for ``torch.save`` that remembers the OSError of a failed write (torch reports it as "unexpected pos")."""

    def __init__(self, f: Any):
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return int(self.f.write(data))
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def _save_atomic(obj: Any, path: Path, stage: str) -> None:
    """``torch.save`` to a temp file, flushed to disk, renamed over ``path``: a crash or a full disk never leaves a
    cut checkpoint, only the previous complete one (a failure is one TrainingError line, with no temp file left)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    writes = None
    try:
        with open(tmp, "wb") as f:
            writes = _Writes(f)
            torch.save(obj, writes)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        cause = writes.error if writes is not None and writes.error is not None else e
        why = getattr(cause, "strerror", None) or one_line(cause, 120)
        raise TrainingError(f"stage {stage}: cannot write the checkpoint {path} ({why}); free disk space (or move the "
                            "stage store to another disk) and run again: training resumes from the last complete "
                            "checkpoint.") from None


class CheckpointWriter:
    """Writes checkpoints in a background thread while training goes on, one batch of files at a time.

    The caller's tensors are copied first (to the CPU: training updates parameters and optimizer moments in
    place, and a CPU copy loads anywhere); then serialisation, write and fsync (what costs per epoch: ~70 ms
    for a tiny U-Net++, ~3.5 s for the paper's B7 on this machine's disk) overlap the next epoch. Each file is
    still written atomically by :func:`_save_atomic`. A failed write raises its :class:`TrainingError` at the
    next :meth:`save` or at :meth:`wait`; after a failure nothing later is written, so the files on disk stay
    the last complete ones.
    """

    def __init__(self, stage: str):
        self.stage = stage
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def save(self, *files: tuple[Any, Path]) -> list[Any]:
        """Write each ``(object, path)`` in order, after the previous batch; returns the copies being written, once
        made (a tensor in several objects, e.g. the weights in ``best.pt`` and ``last.pt``, is copied once)."""
        self.wait()
        memo: dict[int, torch.Tensor] = {}
        copies = [(_host_copy(obj, memo), path) for obj, path in files]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"checkpoint-{self.stage}")
        self._pending = self._pool.submit(self._write, copies)
        return [obj for obj, _ in copies]

    def _write(self, copies: list[tuple[Any, Path]]) -> None:
        for obj, path in copies:
            _save_atomic(obj, path, self.stage)

    def wait(self) -> None:
        """Block until the files are on disk; raises the write's error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write and stop the thread; raises the write's error if it failed."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


def _host_copy(obj: Any, memo: dict[int, torch.Tensor]) -> Any:
    """``obj`` with every tensor replaced by a detached copy on the CPU (containers rebuilt, the rest shared);
    ``memo`` maps ``id(tensor)`` to its copy, so a tensor reached twice is copied once."""
    if isinstance(obj, torch.Tensor):
        if id(obj) not in memo:
            memo[id(obj)] = obj.detach().to("cpu", copy=True)
        return memo[id(obj)]
    if isinstance(obj, dict):
        return type(obj)((k, _host_copy(v, memo)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v, memo) for v in obj)
    return obj


RESUME_KEYS = ("model", "optimizer", "scheduler", "rng", "epoch", "best_metric", "best_epoch", "bad_epochs",
               "history", "seconds")


def checkpoint_bytes(model: nn.Module) -> int:
    """Disk space the checkpoints of one stage need at most: ``best.pt`` (the weights) and ``last.pt`` (weights and
    AdamW's two moments), plus a temp copy of the larger while it replaces the old one."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    last = weights + 2 * trainable
    return weights + 2 * last + 64 * 1024


def order_generator(loader: DataLoader) -> torch.Generator | None:
    """The generator that draws the order of the batches (and, with :class:`harness.data.datasets.SampleSeeds`,
    each item's augmentation seed): the sampler's. Checkpoints save and restore it so that a resumed stage sees
    the batches an uninterrupted one would. The stage loader gives the DataLoader a generator of its own (worker
    seeds only), so it is not this one."""
    generator = getattr(loader.sampler, "generator", None)
    return generator if isinstance(generator, torch.Generator) else loader.generator


def _resume(last_path: Path, best_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            loader: DataLoader, info: DeviceInfo) -> dict[str, Any]:
    """Restore the training state saved in ``last_path``. Raises on a damaged file; the caller then restores the
    model and makes the optimizer and scheduler anew (the RNG is left as it was)."""
    saved = torch.load(last_path, map_location=info.device, weights_only=True)
    if not isinstance(saved, dict) or any(k not in saved for k in RESUME_KEYS):
        raise ValueError("not a training state (keys missing)")
    if not isinstance(saved["history"], list) or not isinstance(saved["epoch"], int):
        raise ValueError("not a training state (history or epoch damaged)")
    if saved["best_epoch"]:  # the best weights must load too, or the result would be lost at the end
        try:
            model.load_state_dict(torch.load(best_path, map_location=info.device, weights_only=True))
        except Exception as e:
            raise ValueError(f"{best_path.name} cannot be loaded: {type(e).__name__}: {one_line(e, 120)}") from None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    initial_rng = torch.get_rng_state()
    try:
        torch.set_rng_state(saved["rng"].cpu())
        generator = order_generator(loader)
        if saved.get("loader_rng") is not None and generator is not None:
            generator.set_state(saved["loader_rng"].cpu())
    except Exception:
        torch.set_rng_state(initial_rng)
        raise
    return {k: saved[k] for k in RESUME_KEYS[4:]}


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    *,
    loss_fn: nn.Module,
    param_groups: list[dict],
    optim: OptimConfig,
    validate: Validator,
    info: DeviceInfo,
    stage: str,
    workdir: Path,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = False,
) -> FitResult:
    """Train ``model`` and keep the best checkpoint (``workdir/best.pt``, a plain state dict).

    ``workdir/last.pt`` holds the full training state after each epoch; when it exists the loop
    resumes from it, and when it cannot be loaded (cut by a crash, tampered) the stage starts over
    with one warning line. A non-finite loss raises :class:`TrainingError` and keeps what was saved;
    so does a checkpoint that cannot be written. Free space for the checkpoints is checked first.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = workdir / "best.pt", workdir / "last.pt"
    model.to(info.device)
    if info.channels_last:
        model.to(memory_format=torch.channels_last)
    loss_fn.to(info.device)
    existing = sum(p.stat().st_size for p in (best_path, last_path) if p.is_file())
    require_free_space(workdir, checkpoint_bytes(model) - existing, f"the checkpoints of stage {stage}",
                       "free space there or put the stage store on another disk")

    def optimisers() -> tuple[torch.optim.Optimizer, Any]:
        optimizer = torch.optim.AdamW(param_groups, weight_decay=optim.weight_decay)
        return optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=optim.plateau_factor, patience=optim.plateau_patience, min_lr=optim.min_lr)

    optimizer, scheduler = optimisers()
    scaler = torch.amp.GradScaler(info.device.type, enabled=info.grad_scaling)
    step_fn = TrainingStep(model, info.compile, stage)
    state: dict[str, Any] = {"epoch": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
                             "seconds": 0.0}
    if last_path.exists():
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        try:
            state.update(_resume(last_path, best_path, model, optimizer, scheduler, train_loader, info))
            logger.info("%s: resuming after epoch %d (best %.4f)", stage, state["epoch"], state["best_metric"])
        except Exception as e:  # a cut or tampered file: torch raises many types
            logger.warning("%s: cannot resume from it (%s: %s); training stage %s from the start.", last_path,
                           type(e).__name__, one_line(e, 160), stage)
            model.load_state_dict(initial)
            optimizer, scheduler = optimisers()
            for damaged in (last_path, best_path):
                damaged.unlink(missing_ok=True)
        del initial

    bar = tqdm(total=optim.epochs, initial=state["epoch"], desc=stage, disable=not progress, leave=False,
               file=sys.stderr)
    writer = CheckpointWriter(stage)
    try:
        stopped_early, best = _epochs(model, train_loader, step_fn, loss_fn, optimizer, scheduler, scaler, validate,
                                      info, optim, stage, state, writer, best_path, last_path, callbacks, bar)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report; the files stay whole
            writer.close()
        raise
    finally:
        bar.close()
    writer.close()
    if not best_path.exists():  # zero epochs were run (e.g. epochs already done but best missing)
        _save_atomic(model.state_dict(), best_path, stage)
    if best is None:  # the best epoch was before a resume, or none was better than -inf
        model.load_state_dict(torch.load(best_path, map_location=info.device, weights_only=True))
    elif state["best_epoch"] != state["epoch"]:  # else the model holds the best weights already
        model.load_state_dict(best)
    return FitResult(best_metric=float(state["best_metric"]), best_epoch=int(state["best_epoch"]),
                     epochs=int(state["epoch"]), seconds=float(state["seconds"]), checkpoint=best_path,
                     history=list(state["history"]), stopped_early=stopped_early)


def _epochs(model: nn.Module, train_loader: DataLoader, step_fn: TrainingStep, loss_fn: nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler, validate: Validator,
            info: DeviceInfo, optim: OptimConfig, stage: str, state: dict[str, Any], writer: CheckpointWriter,
            best_path: Path, last_path: Path, callbacks: Sequence[EpochCallback],
            bar: Any) -> tuple[bool, dict[str, torch.Tensor] | None]:
    """The epochs still to run; updates ``state``. Returns whether training stopped early, and the best weights
    when an epoch of this call was the best (the CPU copy written to ``best.pt``)."""

    def kept() -> str:
        with contextlib.suppress(TrainingError):  # the loss is the error to report; a failed write keeps the old file
            writer.wait()  # the best checkpoint may still be on its way to the disk
        return f"best checkpoint so far kept at {best_path}" if best_path.exists() else "no checkpoint yet"

    best = None
    stopped_early = state["bad_epochs"] >= optim.patience
    while state["epoch"] < optim.epochs and not stopped_early:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        train_loss = _train_epoch(step_fn, train_loader, loss_fn, optimizer, scaler, info, optim, stage, epoch,
                                  kept)
        train_seconds = time.perf_counter() - t0
        val_loss, metric = validate(model)
        scheduler.step(metric if math.isfinite(metric) else -math.inf)
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_metric": metric,
                  "lr": optimizer.param_groups[-1]["lr"], "seconds": seconds, "train_seconds": train_seconds}
        state["history"].append(record)
        state["seconds"] += seconds
        improved = metric > state["best_metric"]
        if improved:
            state.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        generator = order_generator(train_loader)
        weights = model.state_dict()
        last = {"model": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "loader_rng": generator.get_state() if generator is not None else None,
                **copy.deepcopy(state)}
        if improved:
            best, _ = writer.save((weights, best_path), (last, last_path))
        else:
            writer.save((last, last_path))
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{metric:.3f}")
        logger.debug("%s epoch %d: %s", stage, epoch, record)
        for cb in callbacks:
            cb(stage, dict(record))
        stopped_early = state["bad_epochs"] >= optim.patience
    return stopped_early, best


COMPILE_BACKEND = "inductor"
"""``torch.compile`` backend of ``runtime.compile`` (tests use dynamo's ``eager``: tracing without code generation)."""


class TrainingStep:
    """Forward pass, loss and backward pass of a training step: on the model itself, or on ``torch.compile`` of it.

    The compiled module shares the model's parameters, so checkpoints (``model.state_dict()``) keep plain keys
    without the ``_orig_mod.`` prefix and load into an eager model; validation runs the eager model (no
    recompilation for eval mode). Compilation happens in the first step (the backward graph at its first backward
    pass); when it fails (no C compiler for inductor on a CPU, no triton on a GPU, an unsupported Python) that step
    is redone eagerly from the same buffers and RNG state after one warning line, and training goes on eagerly.
    """

    def __init__(self, model: nn.Module, compile: bool, stage: str):
        self.model, self.stage = model, stage
        self.compiled: Any = None
        self.untried = compile
        if compile:
            try:
                self.compiled = torch.compile(model, backend=COMPILE_BACKEND)
            except Exception as e:  # e.g. "Dynamo is not supported on Python 3.x"
                self._fall_back(e)

    def _fall_back(self, e: Exception) -> None:
        logger.warning("%s: torch.compile failed (%s: %s); training without compilation.", self.stage,
                       type(e).__name__, one_line(e, 200))
        self.compiled, self.untried = None, False

    def run(self, x: Any, y: Any, loss_fn: nn.Module, scaler: torch.amp.GradScaler, info: DeviceInfo) -> torch.Tensor:
        """Gradients of the (scaled) loss of one batch accumulated into the parameters; returns the loss."""
        if not self.untried:
            return self._run(self.model if self.compiled is None else self.compiled, x, y, loss_fn, scaler, info)
        self.untried = False
        buffers = {k: b.detach().clone() for k, b in self.model.named_buffers()}
        rng = torch.get_rng_state(), (torch.cuda.get_rng_state_all() if info.is_cuda else None)
        try:
            return self._run(self.compiled, x, y, loss_fn, scaler, info)
        except Exception as e:  # inductor and dynamo raise many types; a genuine model error recurs eagerly
            self._fall_back(e)
        with torch.no_grad():  # undo what the failed attempt did: BatchNorm statistics, dropout draws, gradients
            for k, b in self.model.named_buffers():
                b.copy_(buffers[k])
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
        self.model.zero_grad(set_to_none=True)
        return self._run(self.model, x, y, loss_fn, scaler, info)

    @staticmethod
    def _run(model: Any, x: Any, y: Any, loss_fn: nn.Module, scaler: torch.amp.GradScaler,
             info: DeviceInfo) -> torch.Tensor:
        with autocast(info):
            out = model(x)
        loss = loss_fn(as_float(out), y)
        scaler.scale(loss).backward()
        return loss.detach()


def _train_epoch(step_fn: TrainingStep, loader, loss_fn, optimizer, scaler, info: DeviceInfo, optim: OptimConfig,
                 stage: str, epoch: int, kept: Callable[[], str]) -> float:
    step_fn.model.train()
    total, count = 0.0, 0
    for step, (x, y) in enumerate(loader, start=1):
        x, y = _to_device(x, info, image=True), _to_device(y, info, image=False)
        optimizer.zero_grad(set_to_none=True)
        value = step_fn.run(x, y, loss_fn, scaler, info).item()  # the step's host sync (GradScaler adds one)
        if not math.isfinite(value):  # checked before the optimizer step: the weights stay as they were
            raise TrainingError(
                f"stage {stage}: loss became {value} at epoch {epoch}, step {step}; {kept()}. "
                f"Lower the learning rate or check the inputs."
            )
        scaler.step(optimizer)
        scaler.update()
        total += value * len(x)
        count += len(x)
        if optim.max_steps_per_epoch and step >= optim.max_steps_per_epoch:
            break
    return total / max(count, 1)


@torch.no_grad()
def run_validation(model: nn.Module, loader: Iterable, loss_fn: nn.Module, info: DeviceInfo,
                   score: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
                   reduce: Callable[[np.ndarray], float]) -> tuple[float, float]:
    """Mean loss and a metric: ``score`` maps each batch to per-sample rows, ``reduce`` all rows to it."""
    model.eval()
    total, count, rows = 0.0, 0, []
    for x, y in loader:
        x, y = _to_device(x, info, image=True), _to_device(y, info, image=False)
        with autocast(info):
            out = model(x)
        out = as_float(out)
        total += float(loss_fn(out, y)) * len(x)
        count += len(x)
        rows.append(score(out, y))
    return total / max(count, 1), float(reduce(np.concatenate(rows)))


def classification_score(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Rows (prediction, target) per sample."""
    return torch.stack([logits.argmax(1), y], dim=1).cpu().numpy()


def balanced_accuracy_of(rows: np.ndarray) -> float:
    """Balanced accuracy (eq. 5) of (prediction, target) rows: the registered metric's function."""
    if len(rows) == 0:
        return float("nan")
    rows = np.asarray(rows, dtype=np.int64)
    n_classes = max(N_CLASSES, int(rows.max()) + 1)
    return get_metric("balanced_accuracy").compute({"label": rows[:, 1], "pred_label": rows[:, 0]}, n_classes)


def dice_score(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per-image foreground Dice at the training resolution (lesion = any non-background class),
    with :func:`harness.metrics.segmentation.dice_from_counts` (both empty 1, one empty 0).

    Pixel counts are taken on the device; only three numbers per image leave it.
    """
    pred = logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1) > 0
    gt = y > 0
    counts = torch.stack([(pred & gt).flatten(1).sum(1), pred.flatten(1).sum(1), gt.flatten(1).sum(1)])
    inter, n_pred, n_gt = counts.cpu().numpy()
    return dice_from_counts(inter, n_pred, n_gt)[:, None]


def mean_of(rows: np.ndarray) -> float:
    """Mean per-image Dice over every image of ``dice_score`` rows: the registered ``dice_all_mean``."""
    if len(rows) == 0:
        return float("nan")
    return get_metric("dice_all_mean").compute({"dice": np.asarray(rows, dtype=float)[:, 0]})
