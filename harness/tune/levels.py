"""Final runs of an ablation study: every level of every axis, at the study's reference configuration.

``final.mode: levels`` turns a study's search space into ablation axes. For each pipeline the
reference configuration is its base preset plus the study's overrides (the paper's default unless
the study names ``final.reference``); each run changes exactly one axis to one level (or, for a
study with exactly two axes, one cell of their cross product, so the interaction table is measured,
not assumed). ``pipeline`` is an axis too when a study compares several. A level equal to the
reference value is the reference run itself, so nothing runs twice; evaluation-only axes reuse the
reference's trained stages through the stage cache, so ``levels x seeds`` runs cost ``seeds`` trainings.

The plan is data (``STUDY_DIR/final/plan.json``): the report reads it to know which run is which level.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.tune.space import FloatParam, IntParam, Simplex
from harness.tune.study import StudySpec

PIPELINE_AXIS = "pipeline"
REFERENCE = "reference"
PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Axis:
    """One ablated field (or simplex group) with its levels, for the pipelines it applies to."""

    name: str
    levels: list[Any]
    pipelines: list[str]
    fields: list[str] = field(default_factory=list)  # the config fields a level sets (a simplex: several)

    def overrides(self, level: Any) -> dict[str, Any]:
        if self.name == PIPELINE_AXIS:
            return {}
        if len(self.fields) > 1:  # simplex: a level is a dict of weights
            return {f: level[f.rsplit(".", 1)[-1]] for f in self.fields}
        return {self.name: level}


@dataclass(frozen=True)
class PlannedRun:
    """One final run: its pipeline, overrides, seed, and which (axis, level) cells it measures."""

    pipeline: str
    overrides: dict[str, Any]
    seed: int
    variant: str
    cells: list[dict[str, Any]]  # [{"axis", "level", "reference": bool}], an interaction cell has "axis2", "level2"

    @property
    def dir_name(self) -> str:
        return f"{self.pipeline}-{self.variant}-seed{self.seed}"


def level_label(level: Any) -> str:
    """A level as text: 0.3, true, [identity, hflip], dice=0.4,focal=0.3,lovasz=0.3."""
    if isinstance(level, dict):
        return ",".join(f"{k}={_num(v)}" for k, v in level.items())
    if isinstance(level, bool):
        return str(level).lower()
    if isinstance(level, list | tuple):
        return "[" + ", ".join(map(str, level)) + "]"
    return _num(level) if isinstance(level, float) else str(level)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")[:80] or "x"


def _dotted(config: dict[str, Any], name: str) -> Any:
    node: Any = config
    for part in name.split("."):
        node = node[part]
    return node


def _default_levels(param: Any) -> list[Any]:
    """The grid of a parameter; a continuous one without a step gets low, middle and high."""
    if isinstance(param, FloatParam) and param.step is None:
        mid = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
        return [param.low, round(mid, 10), param.high]
    if isinstance(param, IntParam) and param.log:
        return sorted({param.low, int(round(math.sqrt(param.low * param.high))), param.high})
    return param.grid()


def _simplex_levels(group: Simplex) -> list[dict[str, float]]:
    """Each single loss alone and equal weights."""
    names = [f.rsplit(".", 1)[-1] for f in group.fields]
    vertices = [{n: float(n == m) for n in names} for m in names]
    return [*vertices, {n: round(1 / len(names), 6) for n in names}]


def axes(spec: StudySpec) -> list[Axis]:
    """The study's ablation axes: its search-space parameters and simplexes (levels from
    ``final.levels`` when given, else the grid), and ``pipeline`` when it compares several."""
    out = []
    for name, param in spec.search_space.params.items():
        pipes = [p for p in spec.pipelines if param.applies(p)]
        if pipes:
            out.append(Axis(name, list(spec.final.levels.get(name) or _default_levels(param)), pipes, [name]))
    for group in spec.search_space.simplex:
        pipes = [p for p in spec.pipelines if group.applies(p)]
        name = _common_prefix(group.fields)
        if pipes:
            levels = list(spec.final.levels.get(name) or _simplex_levels(group))
            out.append(Axis(name, levels, pipes, list(group.fields)))
    if len(spec.pipelines) > 1:
        out.append(Axis(PIPELINE_AXIS, list(spec.pipelines), list(spec.pipelines)))
    return out


def _common_prefix(fields: list[str]) -> str:
    parts = [f.split(".") for f in fields]
    common = []
    for seg in zip(*parts, strict=False):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    return ".".join(common) or "+".join(fields)


def reference_level(spec: StudySpec, axis: Axis, pipeline: str) -> Any:
    """The reference configuration's value on ``axis`` (for ``pipeline``: the reference pipeline)."""
    if axis.name == PIPELINE_AXIS:
        return spec.final.reference_pipeline or spec.pipelines[0]
    config = spec.run_config(pipeline, dict(spec.final.reference)).to_dict()
    values = [_dotted(config, f) for f in axis.fields]
    if len(axis.fields) > 1:
        return {f.rsplit(".", 1)[-1]: v for f, v in zip(axis.fields, values, strict=True)}
    return values[0]


def _same(a: Any, b: Any) -> bool:
    numbers = (float, int)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def plan(spec: StudySpec) -> list[PlannedRun]:
    """Every final run of ``final.mode: levels``: per pipeline the reference, each axis level off the
    reference, and (exactly two parameter axes) their cross product; each with every final seed."""
    ax = axes(spec)
    param_axes = [a for a in ax if a.name != PIPELINE_AXIS]
    runs: dict[tuple[str, str, int], PlannedRun] = {}

    def add(pipeline: str, overrides: dict[str, Any], variant: str, cell: dict[str, Any]) -> None:
        for seed in spec.final.seeds:
            key = (pipeline, variant, seed)
            if key not in runs:
                runs[key] = PlannedRun(pipeline, {**spec.final.reference, **overrides}, seed, variant, [])
            runs[key].cells.append(cell)

    for p in spec.pipelines:
        add(p, {}, REFERENCE, {"axis": REFERENCE, "level": REFERENCE, "reference": True})
        mine = [a for a in param_axes if p in a.pipelines]
        for a in mine:
            ref = reference_level(spec, a, p)
            levels = a.levels if any(_same(ref, lv) for lv in a.levels) else [ref, *a.levels]
            for lv in levels:
                is_ref = _same(ref, lv)
                variant = REFERENCE if is_ref else slug(f"{a.name}={level_label(lv)}")
                add(p, {} if is_ref else a.overrides(lv), variant,
                    {"axis": a.name, "level": lv, "reference": is_ref})
        if len(mine) == 2:
            a1, a2 = mine
            r1, r2 = reference_level(spec, a1, p), reference_level(spec, a2, p)
            for l1 in a1.levels:
                for l2 in a2.levels:
                    if _same(l1, r1) or _same(l2, r2):
                        continue  # on a main axis: planned above
                    variant = slug(f"{a1.name}={level_label(l1)}+{a2.name}={level_label(l2)}")
                    add(p, {**a1.overrides(l1), **a2.overrides(l2)}, variant,
                        {"axis": a1.name, "level": l1, "axis2": a2.name, "level2": l2, "reference": False})
    return list(runs.values())


def write_plan(runs: list[PlannedRun], final_dir: Path, spec: StudySpec) -> Path:
    """``final/plan.json``: the runs, their cells, the axes and reference levels (for the report)."""
    final_dir.mkdir(parents=True, exist_ok=True)
    ax = axes(spec)
    data = {
        "mode": "levels",
        "pipelines": list(spec.pipelines),
        "axes": [{"name": a.name, "levels": a.levels, "pipelines": a.pipelines,
                  "reference": {p: reference_level(spec, a, p) for p in a.pipelines}} for a in ax],
        "runs": [{**asdict(r), "dir": r.dir_name} for r in runs],
    }
    path = final_dir / PLAN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return path


def read_plan(final_dir: Path) -> dict[str, Any] | None:
    path = Path(final_dir) / PLAN_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) and data.get("mode") == "levels" else None
