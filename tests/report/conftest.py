"""Fake run directories shared by the report tests (built once per session: ~0.3 s)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run

matplotlib.use("Agg")


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    """One dataset, runs of A and B with seeds 1 and 2, plus runs with a test subset."""
    root = tmp_path_factory.mktemp("fake_runs")
    images = make_dataset(root / "data", n=40, size=(96, 72), seed=0).images
    for s in (1, 2):
        make_run(root / f"a_s{s}", images, "a", seed=s, accuracy=0.85, seg_quality=0.8)
        make_run(root / f"b_s{s}", images, "b", seed=s, accuracy=0.8, seg_quality=0.9)
    make_run(root / "a_test", images, "a", seed=7, test_fraction=0.5)
    make_run(root / "b_test", images, "b", seed=7, test_fraction=0.5)
    return root


@pytest.fixture(scope="session")
def run_a(fake_root) -> Path:
    return fake_root / "a_s1"


@pytest.fixture(scope="session")
def run_b(fake_root) -> Path:
    return fake_root / "b_s1"
