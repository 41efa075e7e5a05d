"""The pipeline registry: the single place that knows which pipelines (task orders) exist.

A pipeline module declares one :class:`PipelineSpec` with :func:`register_pipeline` on its class:
its name and report label, the config sections it reads, its stages in training order (name, kind,
config section), what Grad-CAM explains, and its presets. Config validation, a study's
``pipelines:``, search-space ``when:``, the study runner (per-epoch reports and ASHA's time axis),
the report loader, the artefacts and the report read from here; nothing else names a pipeline.

The built-in pipelines (``a``, ``b``, ``c``) are imported on first use, so importing
:mod:`harness.config` stays light; plug-ins are loaded by :func:`harness.plugins.load_plugins`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from harness.config import RunConfig
    from harness.pipelines.base import Pipeline

BUILTIN_MODULES = ("harness.pipelines.a", "harness.pipelines.b", "harness.pipelines.c")

StageKindName = Literal["classifier", "segmenter", "joint"]


@dataclass(frozen=True)
class StageSpec:
    """One trainable stage: its name (file ``stages/<name>.json``), kind and config section.

    ``section`` is the :class:`~harness.config.RunConfig` field that configures it (model, optimiser,
    epochs); ``classes`` its output classes (1: a binary segmenter).
    """

    name: str
    kind: StageKindName
    section: str
    classes: int
    train_on: Literal["all", "lesion"] = "all"
    """Which training images the stage sees (the study plan sizes its epochs with it)."""


@dataclass(frozen=True)
class PipelineSpec:
    """Everything the harness needs to know about a pipeline, apart from how it computes."""

    name: str
    label: str
    title: str
    stages: tuple[StageSpec, ...]
    sections: tuple[str, ...]
    explain: tuple[str, Literal["full", "roi"]] | None = None
    """(stage, input) Grad-CAM explains: a classifier stage on the full image or on the ROI crop."""
    presets: Mapping[str, str | Mapping[str, Any]] = field(default_factory=dict)
    """Preset name -> a bundled preset file (``harness/presets/<file>.yaml``) or an inline raw config."""
    base_preset: str = ""
    """The preset a study uses for this pipeline when it names none (the paper's settings)."""
    color: str = "#4a5568"
    factory: Callable[[], Pipeline] | None = None

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"pipeline {self.name} has no stage {name!r}; it has {[s.name for s in self.stages]}")

    def epoch_plan(self, config: RunConfig) -> list[tuple[str, int]]:
        """(stage, maximum epochs) in training order: the per-epoch reports of a trial line up on it."""
        return [(s.name, int(getattr(config, s.section).optim.epochs)) for s in self.stages]

    def max_epochs(self, config: RunConfig) -> int:
        return sum(n for _, n in self.epoch_plan(config))

    def stage_offset(self, config: RunConfig, stage: str) -> int:
        """Epochs of the stages before ``stage``: the stage-aligned time axis of a trial's reports."""
        offset = 0
        for name, n in self.epoch_plan(config):
            if name == stage:
                return offset
            offset += n
        raise KeyError(f"pipeline {self.name} has no stage {stage!r}")

    def create(self) -> Pipeline:
        if self.factory is None:
            raise RuntimeError(f"pipeline {self.name} was registered without an implementation")
        return self.factory()


_SPECS: dict[str, PipelineSpec] = {}
_loaded_builtins = False


def _ensure_builtins() -> None:
    global _loaded_builtins
    if not _loaded_builtins:
        _loaded_builtins = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        from harness.plugins import load_plugins

        load_plugins()  # $HARNESS_PLUGINS and installed entry points


def _same_definition(a: Any, b: Any) -> bool:
    """The same class imported twice (e.g. a plug-in file loaded by pytest and by the plug-in loader)."""
    try:
        return a.__qualname__ == b.__qualname__ and inspect.getsourcefile(a) == inspect.getsourcefile(b)
    except TypeError:
        return False


def register_pipeline(name: str, *, label: str, title: str, stages: tuple[StageSpec, ...], sections: tuple[str, ...],
                      explain: tuple[str, Literal["full", "roi"]] | None = None,
                      presets: Mapping[str, str | Mapping[str, Any]] | None = None, base_preset: str = "",
                      color: str = "#4a5568") -> Callable[[type[Pipeline]], type[Pipeline]]:
    """Class decorator: register a :class:`~harness.pipelines.base.Pipeline` under ``name``."""
    if not name or not name.isidentifier() or name != name.lower():
        raise ValueError(f"pipeline names are lowercase identifiers, but got {name!r}")
    if len({s.name for s in stages}) != len(stages):
        raise ValueError(f"pipeline {name}: stage names repeat: {[s.name for s in stages]}")

    def deco(cls: type[Pipeline]) -> type[Pipeline]:
        old = _SPECS.get(name)
        if old is not None and not _same_definition(old.factory, cls):
            raise ValueError(f"pipeline {name!r} is registered twice ({old.factory} and {cls})")
        taken = {s.label: s.name for s in _SPECS.values() if s.name != name}
        if label in taken:
            raise ValueError(f"pipeline {name!r}: label {label!r} is already used by pipeline {taken[label]!r}")
        cls.name = name
        _SPECS[name] = PipelineSpec(name=name, label=label, title=title, stages=tuple(stages),
                                    sections=tuple(sections), explain=explain, presets=dict(presets or {}),
                                    base_preset=base_preset or next(iter(presets or {}), ""), color=color,
                                    factory=cls)
        return cls

    return deco


def unregister_pipeline(name: str) -> None:
    """Remove a pipeline (tests that register a toy pipeline clean up with this)."""
    _SPECS.pop(name, None)


def pipeline_names() -> list[str]:
    """Registered pipelines: the built-ins (a, b, c) first, then plug-ins in registration order."""
    _ensure_builtins()
    builtin = [s.name for s in _SPECS.values() if s.factory is not None and s.factory.__module__ in BUILTIN_MODULES]
    return builtin + [n for n in _SPECS if n not in builtin]


def require_registered(names: list[str]) -> list[str]:
    """``names`` unchanged when every one is registered; else ValueError naming the unknown ones (for
    pydantic validators of ``pipelines`` fields)."""
    known = pipeline_names()
    unknown = [p for p in names if p not in known]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {unknown}; registered: {', '.join(known)}."
                         + did_you_mean(str(unknown[0]), known))
    return names


def get_pipeline(name: str, field_name: str = "pipeline") -> PipelineSpec:
    """The spec of ``name``; an unknown name fails with the known ones and "did you mean"."""
    _ensure_builtins()
    if name not in _SPECS:
        raise ConfigError(f'{field_name}: unknown pipeline "{name}"; known: {", ".join(_SPECS)}.'
                          + did_you_mean(str(name), list(_SPECS)))
    return _SPECS[name]


def all_specs() -> list[PipelineSpec]:
    return [_SPECS[n] for n in pipeline_names()]


def spec_by_label(label: str) -> PipelineSpec | None:
    _ensure_builtins()
    return next((s for s in _SPECS.values() if s.label == label), None)


def label_of(name: str) -> str:
    """Report label of a pipeline; an unregistered name (an old run directory) shows as upper case."""
    _ensure_builtins()
    spec = _SPECS.get(name)
    return spec.label if spec else name.upper()


def order_key(name: str) -> int:
    """Sort key: registration order, unknown names last."""
    names = pipeline_names()
    return names.index(name) if name in names else len(names)


def registered_presets() -> dict[str, tuple[str, str | Mapping[str, Any]]]:
    """Preset name -> (pipeline, bundled file name or inline raw config) over every pipeline."""
    out: dict[str, tuple[str, str | Mapping[str, Any]]] = {}
    for spec in all_specs():
        for preset, source in spec.presets.items():
            out[preset] = (spec.name, source)
    return out
