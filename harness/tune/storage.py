"""Optuna storage handles of a study: opened with one-line errors, shown without their password, never
pickled with it, and opened read-only where a study is only read (``study status``, the report).

A ``--storage postgresql://user:secret@host/db`` URL reaches Ray Tune inside the searchers, and Ray
pickles those (``tuner.pkl`` and the searcher checkpoints under ``STUDY_DIR/ray/``). The storage
object here pickles its URL with the password replaced by ``***``; unpickled, it reconnects with the
URL in ``$HARNESS_OPTUNA_STORAGE`` (set by the user; nothing in the harness unpickles a storage: a
resume opens the storage from ``--storage`` again) when that URL is the same one with the password.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna

from harness.errors import ConfigError, DataError, HarnessError

ENV = "HARNESS_OPTUNA_STORAGE"
"""Environment variable holding the full storage URL (with its password) for an unpickled storage."""

HIDDEN = "***"
_USERINFO = re.compile(r"(?P<scheme>^[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@?#]*):(?P<password>[^@/?#]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token|sslpassword)=)(?P<value>[^&#]*)",
                           re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db`` (also ``?password=``);
    a URL without credentials is returned unchanged."""
    if not url:
        return str(url or "")
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{HIDDEN}@", str(url))
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{HIDDEN}", text)


def _secrets(url: str) -> list[str]:
    found = [m["password"] for m in _USERINFO.finditer(url)] + [m["value"] for m in _QUERY_SECRET.finditer(url)]
    return [s for s in found if s and s != HIDDEN]


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with the URL's password replaced, wherever it appears."""
    out = str(text).replace(url, redact_url(url))
    for secret in _secrets(url):
        out = out.replace(secret, HIDDEN)
    return out


class SafeRDBStorage(optuna.storages.RDBStorage):
    """An RDB storage that pickles without the password of its URL (see the module docstring)."""

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["url"] = redact_url(self.url)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        url = state["url"]
        if url != redact_url(url) or HIDDEN in url:
            full = os.environ.get(ENV, "")
            if not full or redact_url(full) != url:
                raise ConfigError(f"storage {url}: its password is not stored with the study; set ${ENV} to the full "
                                  "URL (or pass --storage) to reconnect.")
            state = {**state, "url": full}
        super().__setstate__(state)


def open_storage(url: str, label: str | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage object (OptunaSearch needs an object, not a URL); SQLite waits for its lock
    instead of failing when trials and the driver write at once. Any failure is one
    :class:`ConfigError` line naming ``label`` (default: ``--storage <url>`` with the password hidden)."""
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return _open(url, kwargs, label or f"--storage {redact_url(url)}", ConfigError, "open")


def sqlite_readonly_url(db: Path) -> str:
    """SQLAlchemy URL opening the SQLite file ``db`` read-only (a missing file is an error, not created)."""
    # quoted twice: SQLAlchemy unquotes the database part once, SQLite's URI parser once more
    return f"sqlite:///file:{quote(quote(str(Path(db).resolve())))}?mode=ro&uri=true"


def sqlite_url(db: Path) -> str:
    """SQLAlchemy URL of the SQLite file ``db`` (read-write, created when missing); ``?``, ``#`` and ``%`` in
    the path are quoted, so that the database is the file named, not a truncated path."""
    return f"sqlite:///{quote(str(Path(db).resolve()), safe='/ ')}"


def open_readonly(db: Path) -> optuna.storages.RDBStorage:
    """The Optuna storage in the SQLite file ``db``, read-only: a file that is not an Optuna database is
    refused with one :class:`DataError` line and left untouched (no tables are created in it)."""
    db = Path(db)
    if not db.is_file():
        raise DataError(f"{db}: no such Optuna database file.")
    return _open(sqlite_readonly_url(db), {}, str(db), DataError, "read")


def _open(url: str, kwargs: dict[str, Any], shown: str, error: type[HarnessError], verb: str
          ) -> optuna.storages.RDBStorage:
    try:
        return SafeRDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy, the DB drivers and Optuna raise many types here
        reason = scrub(f"{type(e).__name__}: {e}".splitlines()[0], url)
        hint = ("is it an Optuna database?" if "readonly" in reason or "not a database" in reason
                else "check the URL and that the database server is reachable.")
        raise error(f"{shown}: cannot {verb} the Optuna storage ({reason}); {hint}") from None


@contextlib.contextmanager
def reading(shown: str) -> Iterator[None]:
    """Turn a database error while reading an opened storage (a damaged file, a dropped connection) into one
    :class:`DataError` line naming ``shown`` (a path, or a URL with its password hidden)."""
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        reason = redact_url(f"{type(e).__name__}: {e}".splitlines()[0])
        raise DataError(f"{shown}: cannot read the Optuna storage ({reason}).") from None
