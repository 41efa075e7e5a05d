"""Stage store: trained stages kept under a hash of everything that affects their training.

A run (or a study trial) that needs a stage whose key is already stored loads it instead of
training; evaluation-only knobs are never part of a key, so a TTA or threshold variant costs
seconds. A file lock per key makes concurrent trials train a shared stage once (a study's scheduler
avoids starting two trials that would train the same key; see :class:`DryRunStore`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.data.io import read_text
from harness.data.output import output_problem, write_bytes_atomic
from harness.errors import DataError, one_line

logger = logging.getLogger(__name__)

KEYED_DISTRIBUTIONS = ("torch", "timm", "segmentation-models-pytorch", "albumentations")
"""Libraries whose version is part of every stage key: a new release may change initialisation, layers
or augmentation, so a stage trained under another version is trained again rather than reused."""
LOCK_WAIT = "lock_wait_s"
"""Field of a run's stage record (``RUN_DIR/stages/<stage>.json``, never the stored one): seconds the run
waited for the stage's lock while another run trained that stage, its worker idle."""


@functools.cache
def code_versions() -> dict[str, str]:
    """The harness version and those of :data:`KEYED_DISTRIBUTIONS` (from package metadata; nothing imported)."""
    from harness import __version__

    versions = {"harness": __version__}
    for name in KEYED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def stage_key(parts: dict[str, Any]) -> str:
    """Stable 16-hex key of a JSON-able description of a stage's training inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _record_problem(record: object) -> str | None:
    """Why a stage record cannot be used (a damaged or hand-edited stage.json), or None."""
    if not isinstance(record, dict):
        return f"a JSON object is expected, not {type(record).__name__}"
    if not isinstance(record.get("checkpoint"), str) or not record["checkpoint"]:
        return "no checkpoint path"
    metric = record.get("best_metric")
    if isinstance(metric, bool) or not isinstance(metric, int | float):
        return f"best_metric is {type(metric).__name__}, not a number"
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "history is not a list of epoch records"
    return None


class StageStore:
    """Directory ``root/<stage>-<key>/`` per trained stage with ``best.pt`` and ``stage.json``.

    What is stored is checked before it is used: a stage whose record or checkpoint is damaged
    (a truncated file, a hand edit) is named in one warning line and trained again.
    """

    dry_run = False
    """True for a :class:`DryRunStore`: the stage code records keys instead of training or loading."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def dir(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def lookup(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stage record when the stage is complete and its checkpoint exists, else None.

        The checkpoint is always the file of that name in the stage's own directory (so a store
        that was moved still works, and a record cannot point the loader at another file).
        """
        path = self.dir(stage, key) / "stage.json"
        if not path.exists():
            return None
        try:
            record = json.loads(read_text(path))
        except (DataError, ValueError, RecursionError) as e:
            logger.warning("%s: unreadable stage record (%s); training stage %s again.", path,
                           one_line(e.problems[0] if isinstance(e, DataError) else e), stage)
            return None
        problem = _record_problem(record)
        if problem is not None:
            logger.warning("%s: damaged stage record (%s); training stage %s again.", path, problem, stage)
            return None
        checkpoint = self.dir(stage, key) / Path(record["checkpoint"]).name
        if not checkpoint.is_file():
            logger.warning("stage %s-%s: checkpoint %s missing; training the stage again.", stage, key, checkpoint)
            return None
        return {**record, "checkpoint": str(checkpoint.resolve())}

    def discard(self, stage: str, key: str, reason: str) -> None:
        """Forget a stored stage that cannot be used (call under :meth:`lock`): its record and checkpoints
        go, with one warning line saying why, so that the stage is trained again."""
        d = self.dir(stage, key)
        logger.warning("%s; training stage %s again.", reason, stage)
        for name in ("stage.json", "best.pt", "last.pt"):
            (d / name).unlink(missing_ok=True)

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[Path]:
        d = self.dir(stage, key)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_problem(d, e, "cannot create the stage directory") from None
        with FileLock(str(d / ".lock")):
            yield d

    def commit(self, stage: str, key: str, record: dict[str, Any]) -> None:
        write_bytes_atomic(self.dir(stage, key) / "stage.json", json.dumps(record, indent=2, default=str).encode())


class DryRunStore(StageStore):
    """A store against which a pipeline trains and loads nothing: each stage it asks for is noted as
    (stage, key, stored) in :attr:`asked`, in training order, and given back as a placeholder.

    What a study's scheduler uses, in the driver, to know before a trial starts which stages it would
    train (keys not yet stored), so that two trials that would train the same stage do not hold two
    workers while one of them waits for the other's lock; and how long a final run will take.
    A pipeline's ``train`` must therefore do its work in the stage data callables (as the built-in ones
    do), not before it asks for a stage.
    """

    dry_run = True

    def __init__(self, root: Path):
        super().__init__(root)
        self.asked: list[tuple[str, str, bool]] = []

    def note(self, stage: str, key: str) -> bool:
        """Record that the run asks for ``stage`` with ``key``; returns whether it is stored."""
        stored = (self.dir(stage, key) / "stage.json").is_file()
        self.asked.append((stage, key, stored))
        return stored
