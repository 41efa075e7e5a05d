"""Files shipped inside the package: the studies (``studies/*.yaml``) and search spaces
(``search_spaces/*.yaml``), found by name from any directory after ``pip install``.

These directories are the one source of truth; the repository's top-level ``studies/`` and
``search_spaces/`` are symlinks to them, so ``harness study run studies/quickstart.yaml`` works in a
checkout and ``harness study run quickstart`` works everywhere. A user's own file always wins over a
shipped one (see :func:`harness.tune.study.load_study`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STUDIES = "studies"
SEARCH_SPACES = "search_spaces"


def _directory(kind: str) -> Path:
    # a wheel installs package data as plain files, so the Traversable is a real directory
    return Path(str(resources.files(__name__) / kind))


def names(kind: str) -> list[str]:
    """Names (file stems) of the shipped files of ``kind`` (:data:`STUDIES` or :data:`SEARCH_SPACES`)."""
    directory = _directory(kind)
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def path(kind: str, name: str) -> Path | None:
    """The shipped ``<kind>/<name>.yaml``, or None when there is no such file."""
    stem = name[:-5] if name.endswith(".yaml") else name
    candidate = _directory(kind) / f"{stem}.yaml"
    return candidate if "/" not in stem and candidate.is_file() else None


def files(kind: str) -> list[Path]:
    """Every shipped file of ``kind`` (the tests validate each one)."""
    return [p for n in names(kind) if (p := path(kind, n)) is not None]
