"""Shared fixtures: thin wrappers over :mod:`harness.testing` (the project's test doubles).

The datasets here never use ``harness.data.synth`` so that data-layer tests do not depend on the
product's generator. Use the factory for anything unusual::

    def test_x(make_dataset, tmp_path):
        root = make_dataset(tmp_path / "ds", n=9, size=[(40, 32), (64, 48)], modes=("RGB", "RGBA"))

The factories are session-scoped fixtures (pure functions), so module-scoped fixtures can use them
too. Code that is not a test (benchmarks, report fakes) imports :mod:`harness.testing` directly;
tests may too, but never ``from conftest import ...``: every conftest.py in this tree is imported
under the module name ``conftest``, so that import finds whichever came last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.testing import datasets, images


def _dataset_root(root: Path, *args: Any, **kwargs: Any) -> Path:
    """:func:`harness.testing.datasets.make_dataset`, returning only the directory (all the data
    tests need; fake runs want ``.images`` and call the function directly)."""
    return datasets.make_dataset(root, *args, **kwargs).root


@pytest.fixture(scope="session")
def make_busi() -> Callable[..., Path]:
    """Factory ``make_busi(src, per_class=2)``; see :func:`harness.testing.datasets.make_busi`."""
    return datasets.make_busi


@pytest.fixture(scope="session")
def make_dataset() -> Callable[..., Path]:
    """Factory ``make_dataset(root, n=12, size=48, rgb=False, ...) -> root``; see
    :func:`harness.testing.datasets.make_dataset` for every option."""
    return _dataset_root


@pytest.fixture(name="write_png", scope="session")
def write_png_fixture() -> Callable[..., Path]:
    """``write_png(path, array, mode=None)``: write any test image as PNG."""
    return images.write_png


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A default 12-image, 48 px gray dataset with 6 patients (2 per class)."""
    return _dataset_root(tmp_path / "ds")


@pytest.fixture(scope="session")
def edit_metadata() -> Callable[..., None]:
    """``edit_metadata(root, fn)``: rewrite training_metadata.xlsx with ``fn(table) -> table``."""
    return datasets.edit_metadata


@pytest.fixture(autouse=True, scope="session")
def _wandb_never_online() -> Iterator[None]:
    """Runs are online whenever the user is logged in (harness.tune.tracking.wandb_mode); tests must not
    reach the W&B server from a logged-in developer machine, so they run with WANDB_MODE=offline unless
    the caller set a mode (Ray workers inherit it)."""
    import os

    before = os.environ.get("WANDB_MODE")
    os.environ.setdefault("WANDB_MODE", "offline")
    yield
    if before is None:
        os.environ.pop("WANDB_MODE", None)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tests run in parallel on 2 cores: one intra-op thread per worker is steadier."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)
