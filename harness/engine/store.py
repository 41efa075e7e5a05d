"""Stage store: trained stages kept under a hash of everything that affects their training.

A run (or a study trial) that needs a stage whose key is already stored loads it instead of
training; evaluation-only knobs are never part of a key, so a TTA or threshold variant costs
seconds. A file lock per key makes concurrent trials train a shared stage once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

logger = logging.getLogger(__name__)

KEYED_DISTRIBUTIONS = ("torch", "timm", "segmentation-models-pytorch", "albumentations")
"""Libraries whose version is part of every stage key: a new release may change initialisation, layers
or augmentation, so a stage trained under another version is trained again rather than reused."""


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


class StageStore:
    """Directory ``root/<stage>-<key>/`` per trained stage with ``best.pt`` and ``stage.json``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def dir(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def lookup(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stage record when the stage is complete and its checkpoint exists, else None."""
        path = self.dir(stage, key) / "stage.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not Path(record.get("checkpoint", "")).is_file():
            logger.warning("stage %s-%s: checkpoint missing, retraining", stage, key)
            return None
        return record

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[Path]:
        d = self.dir(stage, key)
        d.mkdir(parents=True, exist_ok=True)
        with FileLock(str(d / ".lock")):
            yield d

    def commit(self, stage: str, key: str, record: dict[str, Any]) -> None:
        path = self.dir(stage, key) / "stage.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(path)
