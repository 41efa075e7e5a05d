"""Fixtures of the study tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def ray_cpus():
    """A fresh local Ray with 2 CPUs for one test (shut down before and after)."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
