"""User-facing errors: each problem is one line naming where it is and what to do.

The CLI turns a :class:`HarnessError` into its lines on stderr and exit code 2; anything else is a
bug and gets a traceback only with ``--debug``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Bad input from the user (file, row, field). Carries one or more problem lines."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(HarnessError):
    """A config, study or search-space file or override is invalid."""


class DataError(HarnessError):
    """A dataset directory, metadata file, image, mask or split is invalid."""


class OutputError(HarnessError):
    """An output cannot be written: permissions, a full disk, a file where a directory belongs."""


class TrainingError(HarnessError):
    """Training could not go on (e.g. a non-finite loss); what was saved is kept."""


def one_line(text: object, limit: int = 200) -> str:
    """``str(text)`` with line breaks and other control characters as spaces, cut to ``limit`` characters.

    For text from files and libraries that goes into a one-line message.
    """
    flat = "".join(c if c.isprintable() else " " for c in str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest candidate, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""
