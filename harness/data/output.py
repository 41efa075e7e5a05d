"""Writing files safely: atomic, with the umask's permissions, and failing in one line.

A full disk, an unwritable directory or a file where a directory belongs is one
:class:`~harness.errors.OutputError` line naming the path and what to do, never a traceback or a
half-written file: single files are written to a temp file and renamed, directories (a synthetic
dataset, an import) are built in a staging directory and moved into place when complete, and where
the size is known in advance the free space is compared with it first (:func:`require_free_space`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from harness.errors import OutputError


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def output_problem(path: Path | str, e: OSError, what: str = "cannot write it") -> OutputError:
    """One line for an OSError while writing ``path``: what failed, why, and what to do."""
    where = e.filename if e.filename else path
    todo = {
        errno.ENOSPC: "free disk space (or write to another disk) and retry",
        errno.EDQUOT: "free space in your quota (or write to another disk) and retry",
        errno.EACCES: "check the permissions of the directory, or choose another location",
        errno.EPERM: "check the permissions of the directory, or choose another location",
        errno.EROFS: "the file system is read-only; choose another location",
        errno.ENOTDIR: "a file is in the way of a directory; move it away or choose another location",
        errno.EEXIST: "a file is in the way of a directory; move it away or choose another location",
        errno.ENAMETOOLONG: "use a shorter name",
    }.get(e.errno or 0, "check the location and retry")
    return OutputError(f"{path}: {what} ({where}: {e.strerror or e}); {todo}.")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path`` and rename it over ``path``.

    The file gets mode 0666 minus the umask, as an ordinary ``open`` would (mkstemp alone makes it
    0600, unreadable to the other users of a shared dataset). An OSError (disk full, permissions,
    a file where the directory should be) leaves no temp file and becomes one OutputError line.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise output_problem(path, e) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            Path(tmp).unlink(missing_ok=True)


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_free_space(path: Path, need: int, what: str, todo: str) -> None:
    """Refuse up front, in one line, to write ``need`` bytes for ``what`` under ``path`` when its disk
    has less free space (with a 5 % margin): a full disk is then never met half-way through."""
    where = _existing_ancestor(path)
    try:
        free = shutil.disk_usage(where).free
    except OSError:  # unknown: let the write itself fail, as cleanly
        return
    if free < need * 1.05:
        raise OutputError(f"{path}: {what} needs about {_mb(need)} but only {_mb(free)} are free on its disk; {todo}.")


def _mb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _publish(stage: Path, out: Path, last: Sequence[str], moved: list[Path]) -> None:
    """Move the tree under ``stage`` into ``out`` (merging directories), names in ``last`` at the end."""
    entries = sorted(stage.iterdir(), key=lambda p: (p.name in last, p.name))
    for entry in entries:
        target = out / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if not target.is_dir():
                target.mkdir()
                moved.append(target)
            _publish(entry, target, (), moved)
        else:
            os.replace(entry, target)
            moved.append(target)


@contextlib.contextmanager
def staged_output(out: Path, *, last: Sequence[str] = ()) -> Iterator[Path]:
    """Write an output directory's files into a staging directory and move them into ``out`` at the end.

    Yields an empty directory inside ``out`` (so on the same disk; ``out`` is created if missing). If the
    block raises, nothing of it appears in ``out``, the staging directory is removed, and ``out`` too
    when it was created here; an OSError becomes one OutputError line. On success the files are moved
    in by rename (names in ``last``, e.g. the metadata that makes a directory a dataset, at the end).
    """
    out = Path(os.path.abspath(out))
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{out}: is a symlink to a missing directory; give an existing directory or a new path.")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=out))
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise output_problem(out, e, "cannot create the output directory") from None
    moved: list[Path] = []
    try:
        yield stage
        _publish(stage, out, last, moved)
    except BaseException as e:
        for p in reversed(moved):  # a failed publish takes back what it moved
            with contextlib.suppress(OSError):
                p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, OSError):
            raise output_problem(out, e) from None
        raise
    shutil.rmtree(stage, ignore_errors=True)


