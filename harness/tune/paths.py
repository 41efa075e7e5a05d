"""Where a study keeps its files: one value object shared by the driver, its Ray trials and the report.

Layout of a study directory::

    STUDY_DIR/study.yaml        resolved spec        STUDY_DIR/optuna.db     Optuna RDB storage
    STUDY_DIR/trials/<id>/      one run dir a trial  STUDY_DIR/stage_cache/  trained stages, shared
    STUDY_DIR/final/<p>-seed<k> best config re-runs  STUDY_DIR/ray/          Ray Tune experiment state
    STUDY_DIR/wandb/            W&B runs (offline by default)

Kept apart from the runner so that readers of a finished study (``study status``, the report, the
W&B agent) find these paths without importing Ray or the orchestration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StudyPaths:
    """The files of the study rooted at ``root`` (nothing is created here)."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def storage_url(self) -> str:
        """The default Optuna storage: SQLite next to the trials (``--storage`` may point elsewhere)."""
        from harness.tune.storage import sqlite_url

        return sqlite_url(self.db)

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def store(self) -> Path:
        return self.root / "stage_cache"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def spec(self) -> Path:
        return self.root / "study.yaml"

    def final_run(self, pipeline: str, seed: int) -> Path:
        """Run directory of one final re-run; the trainable writes it and the runner returns it."""
        return self.final / f"{pipeline}-seed{seed}"
