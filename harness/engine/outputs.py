"""Cache of a trained stage's inference outputs, so that evaluation-only variants cost post-processing only.

A study's mask-threshold, lesion-pixel, rho or TTA variants of one configuration share its trained
stages (:mod:`harness.engine.store`); without this cache each of them would still run every stage on
the validation and test images again, which for the paper's B7 models costs minutes. An entry is the
list of arrays one inference call returned, stored next to the stage it came from::

    <store>/<stage>-<key>/outputs/<entry key>.npz

The entry key hashes the *input array itself* (shape, dtype and bytes: the image ids, their content
and any crop or resize that made them are all in it) together with everything else the outputs depend
on: the heads computed, TTA views, input channels, batch size, device, AMP, memory format, the
checkpoint's identity (size and modification time, so a stage trained again never meets the outputs of
its previous weights) and the code versions. A hit therefore returns exactly the arrays the same call
would compute. Entries are written atomically (temp file + rename) under a per-entry file lock, so two
trials that need the same outputs at once compute them once; a damaged entry is named in one warning
line and computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from harness.data.io import open_regular
from harness.data.output import write_bytes_atomic
from harness.errors import HarnessError, one_line

logger = logging.getLogger(__name__)

OUTPUTS = "outputs"
"""Directory of a stage's cached outputs, inside its stage-store directory."""
FORMAT = 1
"""Bumped when the entry layout or the meaning of a key part changes, so old entries are never read."""
MAX_ENTRY_BYTES = 16 * 2**30
"""Refuse to read anything larger (a corrupt or foreign file), rather than exhaust memory."""


def array_digest(array: np.ndarray) -> str:
    """Hash of an array's shape, dtype and bytes (C order): what a model saw, whatever it was made from."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([list(a.shape), a.dtype.str]).encode())
    h.update(a.data)
    return h.hexdigest()


def entry_key(inputs: np.ndarray, parts: Mapping[str, Any]) -> str:
    """Key of the outputs of one inference call on ``inputs`` with the settings ``parts`` (JSON-able)."""
    blob = json.dumps({"format": FORMAT, "inputs": array_digest(inputs), **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def file_identity(path: Path) -> list[int]:
    """(size, mtime in ns) of a file: changes whenever the file is written again, and survives a copy that
    keeps modification times (``cp -p``, ``rsync -a``, ``shutil.copytree``), so a moved store keeps its cache."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def _problem(data: Mapping[str, np.ndarray], key: str, rows: int, arrays: int) -> str | None:
    """Why a loaded entry cannot be used, or None."""
    if "key" not in data or str(data["key"]) != key:
        return "it belongs to another key"
    names = [f"out{k}" for k in range(arrays)]
    missing = [n for n in names if n not in data]
    if missing:
        return f"array {missing[0]} missing"
    for n in names:
        a = data[n]
        if a.ndim < 1 or a.shape[0] != rows:
            return f"array {n} has shape {a.shape}, expected {rows} rows"
        if not np.issubdtype(a.dtype, np.floating):
            return f"array {n} is {a.dtype}, not floating point"
    return None


class OutputCache:
    """One stage's cached outputs: ``directory/<key>.npz`` with arrays ``out0..``, plus the key itself."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def read(self, key: str, rows: int, arrays: int) -> tuple[list[np.ndarray] | None, str | None]:
        """(the entry's arrays, None) on a hit; (None, None) when there is no entry; (None, why) when the
        entry exists but cannot be used."""
        path = self.path(key)
        if not path.exists():
            return None, None
        try:
            with open_regular(path, MAX_ENTRY_BYTES) as f, np.load(f, allow_pickle=False) as z:
                data = {n: z[n] for n in z.files}
        except HarnessError as e:  # not a regular file, too large
            return None, one_line(e.problems[0].removeprefix(f"{path}: ").rstrip("."), 160)
        except Exception as e:  # noqa: BLE001 - BadZipFile, ValueError, OSError, EOFError ...: a miss, never a crash
            return None, one_line(f"{type(e).__name__}: {e}", 160)
        problem = _problem(data, key, rows, arrays)
        if problem is not None:
            return None, problem
        return [data[f"out{k}"] for k in range(arrays)], None

    def write(self, key: str, outputs: Sequence[np.ndarray]) -> None:
        """Store ``outputs`` under ``key`` atomically (temp file + rename)."""
        buf = io.BytesIO()
        arrays: dict[str, Any] = {f"out{k}": np.asarray(a) for k, a in enumerate(outputs)}
        np.savez(buf, key=np.array(key), **arrays)
        write_bytes_atomic(self.path(key), buf.getvalue())

    def get_or_compute(self, key: str, rows: int, arrays: int, compute: Callable[[], list[np.ndarray]],
                       what: str = "outputs") -> tuple[list[np.ndarray], bool]:
        """The cached outputs of ``key`` or, on a miss, ``compute()``'s (then stored); returns (outputs, hit).

        ``rows`` is the number of inputs (every array's first dimension) and ``arrays`` how many arrays
        ``compute`` returns. A read without the lock serves the common case; a miss takes the entry's lock,
        reads again (another trial may have just written it) and computes. The cache never fails a run: when
        the store cannot be written, the outputs are computed and returned all the same, with one warning line.
        """
        found, _ = self.read(key, rows, arrays)
        if found is not None:
            return found, True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.directory / f"{key}.lock"))
            lock.acquire()
        except OSError as e:
            logger.warning("%s: cannot use the output cache (%s); computing the %s without it.", self.directory,
                           one_line(e, 160), what)
            return compute(), False
        try:
            found, problem = self.read(key, rows, arrays)
            if found is not None:
                return found, True
            if problem is not None:
                logger.warning("%s: damaged output cache entry (%s); computing the %s again.", self.path(key),
                               problem, what)
            outputs = compute()
            try:
                self.write(key, outputs)
            except (HarnessError, OSError) as e:
                logger.warning("%s: cannot store the %s (%s); they are used without caching.", self.path(key), what,
                               one_line(e.problems[0] if isinstance(e, HarnessError) else e, 160))
            return outputs, False
        finally:
            lock.release()
