"""Plug-ins: modules or Python files that register pipelines (or metrics) when imported.

A user's fourth task order needs no edit of the harness: put the pipeline in ``my_pipeline.py``
(a :class:`~harness.pipelines.base.Pipeline` subclass decorated with
:func:`~harness.pipelines.registry.register_pipeline`) and name it in a study's ``plugins:``, with
``harness run --plugin my_pipeline.py``, in ``$HARNESS_PLUGINS`` (``os.pathsep``-separated), or as a
``harness.plugins`` entry point of an installed package. Ray workers load the study's plug-ins
before their first trial.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from harness.errors import ConfigError

logger = logging.getLogger(__name__)

ENV = "HARNESS_PLUGINS"
ENTRY_POINT_GROUP = "harness.plugins"
_loaded: set[str] = set()


def _import(ref: str) -> None:
    path = Path(ref)
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"plugin {ref}: no such file.")
        resolved = str(path.resolve())
        name = "harness_plugin_" + "".join(c if c.isalnum() else "_" for c in resolved)
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise ConfigError(f"plugin {ref}: cannot be imported as a Python file.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ConfigError(f"plugin {ref}: importing it failed ({type(e).__name__}: {e}).") from None
        return
    try:
        importlib.import_module(ref)
    except ImportError as e:
        raise ConfigError(f"plugin {ref}: cannot import it ({e}); give a module on PYTHONPATH or a .py file.") from None


def load_plugins(refs: Iterable[str] = ()) -> None:
    """Import ``refs``, ``$HARNESS_PLUGINS`` and the installed entry points, each once per process."""
    env = [r for r in os.environ.get(ENV, "").split(os.pathsep) if r.strip()]
    for ref in [*refs, *env]:
        if ref not in _loaded:
            _import(ref)
            _loaded.add(ref)
            logger.debug("loaded plugin %s", ref)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.value}"
        if key not in _loaded:
            ep.load()
            _loaded.add(key)
