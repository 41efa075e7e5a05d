"""A tiny name -> factory registry (timm-style) used for models, losses and pipelines."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

from harness.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names fail with 'did you mean'."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, field: str | None = None) -> T:
        if name not in self._items:
            where = f"{field}: " if field else ""
            raise ConfigError(
                f'{where}unknown {self.kind} "{name}"; known: {", ".join(sorted(self._items))}.'
                + did_you_mean(name, self._items)
            )
        return self._items[name]

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items
