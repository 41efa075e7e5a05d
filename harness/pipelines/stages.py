"""The trainable stage kinds every pipeline is made of, and the inference calls on them.

Pipeline A = classifier stage (3 classes, whole images) + segmenter stage (binary, lesion images).
Pipeline B = segmenter stage (3 classes) + classifier stage (2 classes, ROI crops).
Pipeline C = one joint stage (binary U-Net++ with a 3-class head on its encoder, all images).
Each stage is one function used by every pipeline; a stored stage with the same key is reused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler

from harness import NORMAL
from harness.config import ClassifierConfig, EvalConfig, SegmenterConfig
from harness.data.datasets import JointImages, LabelledImages, MaskedImages, Reseeded, SampleSeeds
from harness.data.transforms import train_transform, tta_views
from harness.engine import fit as engine
from harness.engine.outputs import OUTPUTS, OutputCache, entry_key, file_identity
from harness.engine.predict import Head, predict_heads, sigmoid, softmax
from harness.engine.store import LOCK_WAIT, DryRunStore, code_versions, stage_key
from harness.errors import one_line
from harness.models.classifier import classifier_param_groups, create_classifier
from harness.models.losses import HybridLoss, JointLoss, class_weights, cross_entropy
from harness.models.segmenter import create_joint, create_segmenter, segmenter_param_groups
from harness.pipelines.context import RunContext

logger = logging.getLogger(__name__)

StageDataset = LabelledImages | MaskedImages  # JointImages is a MaskedImages


@dataclass
class Stage:
    """A trained stage ready for inference."""

    name: str
    model: nn.Module
    record: dict[str, Any]

    @property
    def cached(self) -> bool:
        return bool(self.record.get("cached"))


def _loader(ctx: RunContext, ds: StageDataset, batch_size: int, sample_labels: np.ndarray | None, seed: int,
            weighted: bool) -> DataLoader:
    """Training batches whose order and augmentation depend on ``seed`` only, not on ``data.num_workers``.

    Every epoch draws its order and one augmentation seed per item from the sampler's generator in the main
    process (:class:`SampleSeeds`; checkpoints save and restore it). The DataLoader draws a base seed for its
    workers from a generator of its own, once per worker start-up, so workers can be persistent (started once
    per stage instead of every epoch) without shifting later epochs' draws; workers' own seeds touch nothing an
    item depends on. Host memory is pinned for asynchronous copies when the device is a GPU.
    """
    g = torch.Generator().manual_seed(seed)
    sampler: Sampler[int]
    if weighted and sample_labels is not None and len(sample_labels):
        w = class_weights(sample_labels, int(sample_labels.max()) + 1)[sample_labels]
        sampler = WeightedRandomSampler(w.astype(np.float64).tolist(), num_samples=len(ds),
                                        replacement=True, generator=g)
    else:
        sampler = RandomSampler(ds, generator=g)
    workers = ctx.config.data.num_workers
    return DataLoader(Reseeded(ds), batch_size=batch_size, sampler=SampleSeeds(sampler, g),
                      generator=torch.Generator().manual_seed(seed + 1), drop_last=len(ds) > batch_size,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=ctx.info.pin_memory)


def _reuse(ctx: RunContext, name: str, key: str, build: Callable[[], nn.Module], metric_name: str,
           discard: bool) -> Stage | None:
    """The stored stage, loaded, or None when there is none or its checkpoint cannot be loaded (a truncated
    or tampered file). With ``discard`` (under the stage's lock) such a stage is removed from the store."""
    record = ctx.store.lookup(name, key)
    if record is None:
        return None
    model = build()
    try:
        state = torch.load(record["checkpoint"], map_location=ctx.info.device, weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError ... for a bad file
        if discard:
            ctx.store.discard(name, key, f"{record['checkpoint']}: cannot be loaded ({type(e).__name__}: "
                                         f"{one_line(e, 160)})")
        return None
    model.to(ctx.info.device).eval()
    logger.info("%s: reusing trained stage %s (best %s %.4f)", name, key, metric_name, record["best_metric"])
    for epoch_record in record.get("history", []):  # replayed, so a study's per-epoch reports line up
        for cb in ctx.callbacks:
            cb(name, {**epoch_record, "replayed": True})
    return Stage(name, model, {**record, "cached": True})


def _obtain(ctx: RunContext, name: str, kind: str, key_parts: dict[str, Any], build: Callable[[], nn.Module],
            train: Callable[[nn.Module, Any], engine.FitResult], metric_name: str) -> Stage:
    """Load the stage from the store when its key is there, else train it (once, under a lock).

    A stored stage whose checkpoint cannot be loaded is named in one warning line and trained again.
    """
    data, versions = ctx.data_key, code_versions()
    key = stage_key({"stage": name, **key_parts, "data": data, "seed": ctx.config.runtime.seed, "versions": versions})
    if isinstance(ctx.store, DryRunStore):  # which stages a run would train: nothing is loaded or trained
        return Stage(name, nn.Identity(), {"stage": name, "hash": key, "cached": ctx.store.note(name, key)})
    stage = _reuse(ctx, name, key, build, metric_name, discard=False)
    if stage is not None:
        return stage
    t_lock = time.perf_counter()
    with ctx.store.lock(name, key) as workdir:
        waited = time.perf_counter() - t_lock  # > 0 while another trial trains this stage: the worker idles
        if waited > 1.0:
            logger.info("%s: waited %.1fs for another run training stage %s", name, waited, key)
        stage = _reuse(ctx, name, key, build, metric_name, discard=True)  # another trial may have trained it meanwhile
        if stage is not None:
            stage.record[LOCK_WAIT] = waited
            return stage
        t0 = time.perf_counter()
        model = build()
        result = train(model, workdir)
        record = {"stage": name, "kind": kind, "hash": key, "checkpoint": str(result.checkpoint.resolve()),
                  "epochs": result.epochs, "best_epoch": result.best_epoch,
                  "best_metric": result.best_metric, "metric_name": metric_name,
                  "seconds": time.perf_counter() - t0, "stopped_early": result.stopped_early,
                  "data": data, "versions": versions, "history": result.history}
        ctx.store.commit(name, key, record)
        (workdir / "last.pt").unlink(missing_ok=True)  # only needed to resume; ~3x the model size
        logger.info("%s: trained %d epochs in %.1fs, best %s %.4f (epoch %d)", name, result.epochs,
                    record["seconds"], metric_name, result.best_metric, result.best_epoch)
        return Stage(name, model.eval(), {**record, "cached": False, LOCK_WAIT: waited})


StageData = Callable[[], tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
"""() -> ((train images, targets, sampler labels), (val images, targets)); called only when the stage
must train. Targets are class labels for a classifier and class-index masks for a segmenter."""


@dataclass(frozen=True)
class StageKind:
    """What differs between training a classifier and a segmenter; the loop around it is shared."""

    # Any: the kind's own config section, model and (output, target) types - a tensor each, or a
    # (mask, class) pair for the multi-task network.
    name: str
    metric_name: str
    build: Callable[[Any, int, int], nn.Module]
    dataset: Callable[..., StageDataset]
    loss: Callable[[Any, int, np.ndarray], nn.Module]
    param_groups: Callable[[Any, Any], list[dict]]
    score: Callable[[Any, Any], np.ndarray]
    reduce: Callable[[np.ndarray], float]


CLASSIFIER = StageKind(
    "classifier", "balanced_accuracy", create_classifier, LabelledImages,
    lambda cfg, n, y: cross_entropy(y if cfg.class_weighting else None, n), classifier_param_groups,
    engine.classification_score, engine.balanced_accuracy_of)
SEGMENTER = StageKind(
    "segmenter", "dice", create_segmenter, MaskedImages,
    lambda cfg, n, y: HybridLoss(cfg.loss, "binary" if n == 1 else "multiclass"), segmenter_param_groups,
    engine.dice_score, engine.mean_of)


def _joint_score(out: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """Rows (predicted class, true class, lesion Dice) per image."""
    cls = engine.classification_score(out[1], y[1])
    return np.column_stack([cls, engine.dice_score(out[0], y[0])[:, 0]])


def _joint_reduce(rows: np.ndarray) -> float:
    """Stage metric of the multi-task network: mean of balanced accuracy and the lesion images' Dice."""
    lesion = rows[:, 1] != NORMAL
    dice = engine.mean_of(rows[lesion, 2:3]) if lesion.any() else 0.0
    return 0.5 * (engine.balanced_accuracy_of(rows[:, :2].astype(np.int64)) + dice)


JOINT = StageKind(
    "joint", "bacc_dice_mean", create_joint, JointImages,
    lambda cfg, n, y: JointLoss(cfg.loss, cfg.cls_weight, cross_entropy(y[1] if cfg.class_weighting else None, n)),
    segmenter_param_groups, _joint_score, _joint_reduce)

STAGE_KINDS = {k.name: k for k in (CLASSIFIER, SEGMENTER, JOINT)}


def train_stage(ctx: RunContext, name: str, kind: StageKind, cfg: ClassifierConfig | SegmenterConfig,
                num_classes: int, data: StageData, key_parts: dict[str, Any] | None = None) -> Stage:
    """Train (or reuse) one stage on uint8 images at ``cfg.image_size``.

    A classifier gets CE (class-weighted, eq. 1) and differential learning rates; a segmenter the
    hybrid loss (eq. 6) and the weighted sampler. ``num_classes`` 1 means a binary (sigmoid) segmenter.
    """
    seed, channels = ctx.config.runtime.seed, ctx.config.data.channels

    def build() -> nn.Module:
        return kind.build(cfg, num_classes, channels)

    def fit_it(model: nn.Module, workdir) -> engine.FitResult:
        (train_x, train_y, sampler_labels), (val_x, val_y) = data()
        train_ds = kind.dataset(train_x, train_y, channels, train_transform(cfg.augment, seed))
        val_loader = DataLoader(kind.dataset(val_x, val_y, channels), batch_size=ctx.config.eval.batch_size)
        loss = kind.loss(cfg, num_classes, train_y)
        loader = _loader(ctx, train_ds, cfg.optim.batch_size, sampler_labels, seed, cfg.sampler == "weighted")
        validate = lambda m: engine.run_validation(m, val_loader, loss, ctx.info, kind.score, kind.reduce)  # noqa: E731
        return engine.fit(model, loader, loss_fn=loss, param_groups=kind.param_groups(model, cfg), optim=cfg.optim,
                          validate=validate, info=ctx.info, stage=name, workdir=workdir, callbacks=ctx.callbacks,
                          progress=ctx.progress)

    parts = {"kind": kind.name, "cfg": cfg.model_dump(mode="json"), "num_classes": num_classes, **(key_parts or {})}
    return _obtain(ctx, name, kind.name, parts, build, fit_it, kind.metric_name)


CLASS_PROBS = Head(softmax, dense=False, name="softmax")
LESION_SIGMOID = Head(sigmoid, dense=True, post=lambda p: p[:, 0], name="sigmoid[:, 0]")
LESION_SOFTMAX = Head(softmax, dense=True, post=lambda p: 1 - p[:, 0], name="1 - softmax[:, 0]")
"""The heads of the inference calls: class probabilities; lesion probability of a binary segmenter
(sigmoid) and of a multi-class one (1 - P(background))."""


def stage_outputs(ctx: RunContext, stage: Stage, images: np.ndarray, heads: Sequence[Head], ev: EvalConfig,
                  tta: bool | None = None) -> list[np.ndarray]:
    """``heads`` of ``stage`` on ``images`` (mean over the TTA views when TTA is on; ``tta`` overrides
    ``ev.tta``), from the stage's output cache when the same call was made before.

    The one inference path of every pipeline: a mask-threshold, lesion-pixel or rho variant of a run
    finds its stages' outputs cached (:mod:`harness.engine.outputs`) and costs post-processing only.
    Stages that do not live in this run's stage store (``harness predict``) are run uncached.
    """
    use_tta = ev.tta if tta is None else tta

    def compute() -> list[np.ndarray]:
        return predict_heads(stage.model, images, info=ctx.info, channels=ctx.config.data.channels,
                             views=tta_views(use_tta, ev.tta_views), heads=heads, batch_size=ev.batch_size)

    cache, checkpoint = _output_cache(ctx, stage)
    if cache is None or not len(images):
        return compute()
    if any(not h.name for h in heads):
        raise ValueError("every head of a cached inference call needs a name (Head.name)")
    parts = {"stage": stage.record["hash"], "checkpoint": checkpoint, "versions": code_versions(),
             "heads": [[h.name, h.dense, h.select] for h in heads],
             "views": list(ev.tta_views) if use_tta else ["identity"], "channels": ctx.config.data.channels,
             "batch_size": ev.batch_size, "device": ctx.info.device.type, "amp": ctx.info.amp,
             "channels_last": ctx.info.channels_last}
    t0 = time.perf_counter()
    outputs, hit = cache.get_or_compute(entry_key(images, parts), len(images), len(heads), compute,
                                        what=f"{stage.name} outputs")
    if hit:
        logger.info("%s: outputs of %d images read from the output cache (%.2fs)", stage.name, len(images),
                    time.perf_counter() - t0)
    return outputs


def _output_cache(ctx: RunContext, stage: Stage) -> tuple[OutputCache | None, list[int] | None]:
    """The output cache of ``stage`` and its checkpoint's identity, when the stage lives in ``ctx.store``."""
    key, checkpoint = stage.record.get("hash"), stage.record.get("checkpoint")
    if not isinstance(key, str) or not isinstance(checkpoint, str):
        return None, None
    directory = ctx.store.dir(stage.name, key)
    try:
        if Path(checkpoint).resolve().parent != directory.resolve():
            return None, None
        return OutputCache(directory / OUTPUTS), file_identity(Path(checkpoint))
    except OSError:
        return None, None


def classify(ctx: RunContext, stage: Stage, images: np.ndarray, ev: EvalConfig) -> np.ndarray:
    """Class probabilities (N, C): mean softmax over the TTA views when TTA is on."""
    return stage_outputs(ctx, stage, images, [CLASS_PROBS], ev)[0]


def lesion_probability(ctx: RunContext, stage: Stage, images: np.ndarray, ev: EvalConfig,
                       tta: bool | None = None) -> np.ndarray:
    """Per-pixel lesion probability (N, H, W) at the segmenter's resolution.

    Binary segmenters: sigmoid; multi-class: 1 - P(background). TTA probabilities are mapped back
    with each view's inverse and averaged.
    """
    head = LESION_SIGMOID if _out_channels(stage.model) == 1 else LESION_SOFTMAX
    return stage_outputs(ctx, stage, images, [head], ev, tta)[0]


def _out_channels(model: nn.Module) -> int:
    head = getattr(model, "segmentation_head", None)
    convs = [m for m in (head.modules() if head is not None else model.modules()) if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels
