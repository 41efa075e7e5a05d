"""No pooling: runs of one pipeline that differ in anything but the seed are different variants.

Table 9 averages the runs of a column group and calls their spread "std over runs (seeds)", which is
only true when the runs differ in nothing else. Two runs are the same variant when their resolved
configs agree on every field that can change results (:func:`result_fields`): ``pipeline``, the
``data`` section and the config sections the pipeline reads (its registry spec's ``sections``),
minus :data:`IGNORED_FIELDS`. Variants of a pipeline become separate column groups labelled by the
fields that differ, e.g. ``B (roi.margin=0.3)``; more than :data:`MAX_VARIANTS` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import DataError
from harness.pipelines.registry import get_pipeline, label_of, pipeline_names

IGNORED_FIELDS: tuple[str, ...] = ("name", "runtime", "data.dir", "data.cache_dir")
"""Fields (and whole sections) that never make two runs different variants: the run's name, where and
how it computed (``runtime``: RuntimeConfig's contract is that only its seed changes results, and
the seed is what the runs of a variant differ in) and paths (the same data may live elsewhere)."""
MAX_VARIANTS = 4
"""Column groups one pipeline may have; more (e.g. every trial of a study) is refused."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"roi": {"margin": 0.2}}`` -> ``{"roi.margin": 0.2}``; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _ignored(key: str) -> bool:
    return any(key == f or key.startswith(f"{f}.") for f in IGNORED_FIELDS)


def result_fields(config: Mapping[str, Any], pipeline: str) -> dict[str, Any]:
    """The flattened fields of ``config`` that can change a run's results: ``pipeline``, ``data``
    and the pipeline's own sections (all sections for an unregistered pipeline), minus
    :data:`IGNORED_FIELDS`."""
    sections = set(get_pipeline(pipeline).sections) if pipeline in pipeline_names() else None
    out = {}
    for key, value in flatten(config).items():
        top = key.split(".", 1)[0]
        if _ignored(key) or (sections is not None and "." in key and top != "data" and top not in sections):
            continue
        out[key] = value
    return out


def differing_fields(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sorted fields whose value is not the same in every one of ``configs`` (a missing field
    counts as a value of its own)."""
    missing = object()
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({_text(c.get(k, missing)) for c in configs}) > 1]


def _text(value: Any) -> str:
    """A short, stable rendering of a config value for labels and comparison."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError:
        return repr(value)


def split_variants(pipeline: str, runs: list[Any]) -> dict[str, list[Any]]:
    """Label -> runs of one pipeline, one entry per variant in order of first appearance: the
    pipeline's label alone when all runs are one variant, else ``"B (roi.margin=0.3)"``.

    ``runs`` are :class:`~harness.report.loader.RunData` (anything with ``config``).
    """
    fields = [result_fields(r.config, pipeline) for r in runs]
    differ = differing_fields(fields)
    label = label_of(pipeline)
    if not differ:
        return {label: list(runs)} if runs else {}
    out: dict[str, list[Any]] = {}
    for run, f in zip(runs, fields, strict=True):
        text = ", ".join(f"{k}={_text(f.get(k, '(unset)'))}" for k in differ)
        out.setdefault(f"{label} ({text})", []).append(run)
    if len(out) > MAX_VARIANTS:
        raise DataError(f"pipeline {label}: the runs are {len(out)} different configurations (they differ in "
                        f"{', '.join(differ)}), more than the {MAX_VARIANTS} column groups Table 9 shows per "
                        "pipeline; pass the runs of fewer configurations (seeds of one config are pooled), or a "
                        "study directory with final/ runs.")
    return out
