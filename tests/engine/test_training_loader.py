"""The stage's training loader: persistent workers when ``data.num_workers > 0``, and batches (order and
augmentation) that are a function of the seed only, whatever the workers and wherever training resumes."""

from __future__ import annotations

import types

import numpy as np
import torch

from harness.config import AugmentConfig, load_run_config
from harness.data.datasets import MaskedImages
from harness.data.transforms import train_transform
from harness.engine.fit import order_generator
from harness.pipelines.stages import _loader

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def _stage_loader(workers: int, weighted: bool = True):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (18, 24, 24), dtype=np.uint8)
    masks = (rng.random((18, 24, 24)) > 0.7).astype(np.uint8)
    ds = MaskedImages(images, masks, 3, train_transform(AugmentConfig(strength=2), seed=3))
    config = load_run_config("tiny-a", [f"data.num_workers={workers}"])
    ctx = types.SimpleNamespace(config=config, info=types.SimpleNamespace(pin_memory=False))
    return _loader(ctx, ds, 4, np.arange(18) % 3, seed=3, weighted=weighted)  # type: ignore[arg-type]


def _epoch(loader, steps: int | None = None) -> Batches:
    out = []
    for step, (x, y) in enumerate(loader, start=1):
        out.append((x, y))
        if step == steps:  # an epoch cut short (optim.max_steps_per_epoch), workers still prefetching
            break
    return out


def _same(a: Batches, b: Batches) -> bool:
    return len(a) == len(b) and all(torch.equal(x0, x1) and torch.equal(y0, y1)
                                    for (x0, y0), (x1, y1) in zip(a, b, strict=True))


def test_persistent_workers_give_the_batches_of_the_main_process():
    """Measured before the change: with persistent workers the DataLoader drew its workers' base seed from the
    sampler's generator once instead of every epoch, so every epoch after the first differed from 0 workers."""
    main, workers = _stage_loader(0), _stage_loader(2)
    assert not main.persistent_workers and workers.persistent_workers and workers.num_workers == 2
    epochs_main = [_epoch(main, steps=2), _epoch(main), _epoch(main)]
    epochs_workers = [_epoch(workers, steps=2), _epoch(workers), _epoch(workers)]
    for a, b in zip(epochs_main, epochs_workers, strict=True):
        assert _same(a, b)
    assert len(epochs_main[1]) == 4 and not _same(epochs_main[1], epochs_main[2]), "epochs still differ"


def test_a_resumed_loader_continues_with_the_next_epochs_batches():
    """What fit's checkpoint saves (``order_generator``) is all a new loader needs to give the next epoch."""
    loader = _stage_loader(2, weighted=False)
    _epoch(loader)
    state = order_generator(loader).get_state()
    expected = _epoch(loader)
    resumed = _stage_loader(2, weighted=False)
    order_generator(resumed).set_state(state)
    assert order_generator(resumed) is resumed.sampler.generator is not resumed.generator
    assert _same(_epoch(resumed), expected)
