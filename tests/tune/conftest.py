"""Fixtures of the study tests."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture
def ray_cpus():
    """A fresh local Ray with 2 CPUs for one test (shut down before and after)."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _no_shared_wandb_service():
    """A test that runs W&B in the pytest process (e.g. ``execute_trial`` inline) leaves its service's
    address in ``$WANDB_SERVICE``; every later Ray worker and driver subprocess would inherit it and log
    into that one service, where a crashed or killed trial's run stays open ("run ID ... is in use" when
    its retry continues the run). Each test ends with the service shut down and the variable gone."""
    yield
    if os.environ.pop("WANDB_SERVICE", None) is not None and "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
