"""Where a study keeps its files: one value object shared by the driver, its Ray trials and the report.

Layout of a study directory::

    STUDY_DIR/study.yaml        resolved spec        STUDY_DIR/optuna.db     Optuna RDB storage
    STUDY_DIR/trials/<p>-<n>/   one run dir a trial  STUDY_DIR/stage_cache/  trained stages, shared
    STUDY_DIR/final/<p>-seed<k> best config re-runs  STUDY_DIR/ray/          Ray Tune experiment state
    STUDY_DIR/wandb/            W&B runs           STUDY_DIR/manifest.json  versions, data, command
    STUDY_DIR/timings.json      Tune sessions: start, end, worker slots

A search trial's directory is named after its Optuna trial: ``trials/a-007`` is trial 7 of the Optuna
study ``<study>:a`` (its W&B run has the same name; the Ray trial id is in its ``trial.json``).

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

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def timings(self) -> Path:
        """When each run of the study's Tune experiment started and ended, and its worker slots."""
        return self.root / "timings.json"

    def trial_run(self, pipeline: str, number: int) -> Path:
        """Run directory of search trial ``number`` of the pipeline's Optuna study."""
        return self.trials / trial_dir_name(pipeline, number)

    def trial_of(self, user_attrs: dict) -> Path | None:
        """Run directory of a finished Optuna trial from its user attributes (``trial_dir``; studies
        written before trial directories were named after Optuna trials: the Ray trial id)."""
        name = user_attrs.get("trial_dir") or user_attrs.get("ray_trial_id")
        return self.trials / str(name) if name else None

    def final_run(self, pipeline: str, seed: int) -> Path:
        """Run directory of one final re-run; the trainable writes it and the runner returns it."""
        return self.final / f"{pipeline}-seed{seed}"


def trial_dir_name(pipeline: str, number: int) -> str:
    """``<pipeline>-<number>`` (3 digits, so that ``ls`` sorts them): trial ``number`` of ``<study>:<pipeline>``."""
    return f"{pipeline}-{number:03d}"


STUDY_ENTRIES = frozenset({"study.yaml", "optuna.db", "optuna.db-journal", "optuna.db-wal", "optuna.db-shm", "trials",
                           "final", "stage_cache", "ray", "wandb", "report", "manifest.json",
                           "timings.json"})
"""What a study directory holds (the layout above, with SQLite's sidecar files); ``quickstart --fresh`` deletes
nothing else."""


def remove_study_dir(path: Path, name: str) -> None:
    """Delete ``path`` when it is recognisably the study ``name``'s directory: only study entries, and its
    study.yaml names the study (or, a study stopped before writing it, there is an optuna.db). Anything
    else is refused with one line: ``--fresh`` must never delete a directory it did not make."""
    import shutil

    import yaml

    from harness.errors import ConfigError

    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise ConfigError(f"--out {path}: not a directory; --fresh deletes only a quickstart study directory.")
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return
    recorded = None
    if (path / "study.yaml").is_file():
        try:
            raw = yaml.safe_load((path / "study.yaml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raw = None
        recorded = raw.get("name") if isinstance(raw, dict) else None
    ours = entries <= STUDY_ENTRIES and (recorded == name or (recorded is None and "study.yaml" not in entries
                                                             and "optuna.db" in entries))
    if not ours:
        foreign = sorted(entries - STUDY_ENTRIES)
        why = (f"it holds {', '.join(foreign[:3])}" if foreign
               else f"its study.yaml names study {recorded!r}, not {name!r}")
        raise ConfigError(f"--out {path}: not a {name} study directory ({why}); --fresh deletes only that. "
                          "Choose another --out or remove it yourself.")
    shutil.rmtree(path)
