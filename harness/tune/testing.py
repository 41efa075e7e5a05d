"""Test doubles for study runs (in the package, as ``optuna.testing`` is, because Ray workers must be
able to import them: pytest's importlib mode gives test modules names no worker can import).

Pass them to :func:`harness.tune.runner.run_study` as ``epoch_hooks``; they reach every trial
through ``tune.with_parameters``, so production code reads no test switches from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CrashOnce:
    """Epoch hook: the first epoch (of any trial) that finds ``marker`` missing writes it and kills
    its worker process, a hard crash as an OOM kill or a lost node would cause. The marker holds
    ``"<stage> epoch <n>"`` so that the test can tell where the crash happened."""

    marker: Path

    def __call__(self, stage: str, record: dict[str, Any]) -> None:
        if not self.marker.exists():
            self.marker.write_text(f"{stage} epoch {record['epoch']}")
            os._exit(1)
