"""Search spaces as data: Optuna-style distributions over dotted config fields.

```yaml
name: roi_margin
params:
  roi.margin: {type: float, low: 0.0, high: 0.5, step: 0.05, when: {pipeline: [b]}}
  eval.tta: {type: categorical, choices: [true, false]}
simplex:                       # weights that sum to 1 (Dirichlet(1) via normalised exponentials)
  - fields: [segmenter.loss.dice, segmenter.loss.focal, segmenter.loss.lovasz]
```
``when`` makes a parameter exist only for some pipelines (task orders). A study searches each pipeline
in its own Optuna study, so its trials have no ``pipeline`` parameter; only a W&B sweep, which has one
search for everything, samples the pipeline as the categorical parameter ``pipeline``.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.config import Strict

MAX_PARAM_VALUES = 1_000_000
"""Most values a stepped parameter may take (its grid and W&B ``values`` are lists of them)."""
MAX_GRID = 100_000
"""Most configurations a grid-sampler study may have (each is a trial)."""

PIPELINE_PARAM = "pipeline"
SIMPLEX_PREFIX = "simplex."
"""Optuna parameter name of a raw simplex draw: ``simplex.<field>`` (the run sees the normalised weight)."""


class When(Strict):
    pipeline: list[str] = Field(min_length=1)

    @field_validator("pipeline")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        from harness.pipelines.registry import require_registered

        return require_registered(value)


class _Param(Strict):
    """A distribution over one config field. A new distribution is one subclass here (added to
    :data:`Param`): it says how Optuna suggests it, its grid, its W&B sweep form and its extremes."""

    when: When | None = None

    def applies(self, pipeline: str) -> bool:
        return self.when is None or pipeline in self.when.pipeline

    def suggest(self, trial: Any, name: str) -> Any:
        raise NotImplementedError

    def grid(self) -> list[Any]:
        raise NotImplementedError

    def wandb(self) -> dict[str, Any]:
        """The parameter in a W&B sweep config."""
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """Values a study checks before any trial starts (each must give a valid run config)."""
        raise NotImplementedError

    def size(self) -> int | None:
        """How many values :meth:`grid` gives (counted, not built), or None when it cannot be gridded."""
        raise NotImplementedError


def _listable(n: int | None) -> bool:
    """Whether a parameter's values are few enough to be listed (a grid axis, W&B ``values``)."""
    return n is not None and n <= MAX_PARAM_VALUES


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, but got low={self.low}, high={self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log=true needs low > 0 and no step")
        return self

    def size(self) -> int | None:
        if self.step is None:
            return None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def suggest(self, trial: Any, name: str) -> float:
        value = trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        return round(value, 10) if self.step is not None else value  # 0.6000000000000001 -> 0.6

    def grid(self) -> list[float]:
        n = self.size()
        if n is None or self.step is None:
            raise ValueError("a float parameter needs a step to be gridded")
        if not _listable(n):
            raise ValueError(f"the step gives {n} values (at most {MAX_PARAM_VALUES} in a grid); use a coarser step")
        return [round(self.low + i * self.step, 10) for i in range(n)]

    def wandb(self) -> dict[str, Any]:
        if self.step is not None and not _listable(self.size()):
            return {"distribution": "q_uniform", "min": self.low, "max": self.high, "q": self.step}
        if self.step is not None:
            return {"values": self.grid()}
        return {"distribution": "log_uniform_values" if self.log else "uniform", "min": self.low, "max": self.high}

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, but got low={self.low}, high={self.high}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError(f"log=true needs low >= 1 and step 1, but got low={self.low}, step={self.step}")
        return self

    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def grid(self) -> list[int]:
        if not _listable(self.size()):
            raise ValueError(f"{self.size()} values (at most {MAX_PARAM_VALUES} in a grid); use a larger step")
        return list(range(self.low, self.high + 1, self.step))

    def wandb(self) -> dict[str, Any]:
        if self.step == 1 and not self.log:
            return {"distribution": "int_uniform", "min": self.low, "max": self.high}
        if not _listable(self.size()):
            return {"distribution": "q_log_uniform_values" if self.log else "q_uniform", "min": self.low,
                    "max": self.high, "q": self.step}
        return {"values": self.grid()}

    def extremes(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)

    def grid(self) -> list[Any]:
        return list(self.choices)

    def wandb(self) -> dict[str, Any]:
        return {"values": list(self.choices)}

    def extremes(self) -> list[Any]:
        return list(self.choices)

    def size(self) -> int:
        return len(self.choices)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class Simplex(Strict):
    """Non-negative weights over ``fields`` that sum to 1."""

    fields: list[str] = Field(min_length=2)
    when: When | None = None

    def applies(self, pipeline: str) -> bool:
        return self.when is None or pipeline in self.when.pipeline

    def raw_names(self) -> list[str]:
        return [f"{SIMPLEX_PREFIX}{f}" for f in self.fields]


class SearchSpace(Strict):
    name: str = "space"
    description: str = ""
    params: dict[str, Param] = Field(default_factory=dict)
    simplex: list[Simplex] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlap(self) -> SearchSpace:
        simplex_fields = [f for s in self.simplex for f in s.fields]
        both = set(simplex_fields) & set(self.params)
        if both or len(set(simplex_fields)) != len(simplex_fields):
            raise ValueError(f"a field is both a parameter and a simplex weight (or in two simplexes): {sorted(both)}")
        if PIPELINE_PARAM in self.params:
            raise ValueError('"pipeline" is set by the study\'s `pipelines`, not by the search space')
        return self

    def fields(self) -> list[str]:
        return list(self.params) + [f for s in self.simplex for f in s.fields]


def simplex_weights(raw: list[float]) -> list[float]:
    """Uniform on the simplex: u_i ~ U(0,1) -> -log(u_i) / sum (a Dirichlet(1) draw)."""
    e = [-math.log(max(min(u, 1.0), 1e-12)) for u in raw]
    total = sum(e)
    return [round(x / total, 6) for x in e] if total > 0 else [round(1 / len(e), 6)] * len(e)


def suggest(space: SearchSpace, trial: Any, pipelines: list[str]) -> tuple[str, dict[str, Any]]:
    """Define-by-run: ask ``trial`` (optuna.Trial or a captor) for one configuration.

    Returns the pipeline and the dotted config overrides (simplex weights already normalised).
    """
    pipeline = trial.suggest_categorical(PIPELINE_PARAM, pipelines) if len(pipelines) > 1 else pipelines[0]
    out: dict[str, Any] = {}
    for name, param in space.params.items():
        if param.applies(pipeline):
            out[name] = param.suggest(trial, name)
    for group in space.simplex:
        if group.applies(pipeline):
            raw = [trial.suggest_float(n, 1e-6, 1.0) for n in group.raw_names()]
            out.update(zip(group.fields, simplex_weights(raw), strict=True))
    return pipeline, out


def grid(space: SearchSpace, pipelines: list[str]) -> dict[str, list[Any]]:
    """The search space as an Optuna GridSampler grid (simplexes cannot be gridded); its size is
    checked (counted) before any list is built."""
    if space.simplex:
        raise ValueError("a simplex cannot be searched with the grid sampler; use tpe or random")
    n = grid_size(space, pipelines)
    if n > MAX_GRID:
        raise ValueError(f"the grid has {n} configurations (at most {MAX_GRID}); use coarser steps or fewer values")
    g: dict[str, list[Any]] = {PIPELINE_PARAM: list(pipelines)} if len(pipelines) > 1 else {}
    g.update({name: p.grid() for name, p in space.params.items()})
    return g


def grid_size(space: SearchSpace, pipelines: list[str]) -> int:
    """Distinct configurations of a grid, honouring ``when`` (a B-only axis does not multiply A)."""
    total = 0
    for pipeline in pipelines:
        counts = [p.size() for p in space.params.values() if p.applies(pipeline)]
        if any(n is None for n in counts):
            raise ValueError("a float parameter needs a step to be gridded")
        total += math.prod(n for n in counts if n is not None)
    return total


def grid_points(space: SearchSpace, pipelines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every grid configuration once, honouring ``when``."""
    points = []
    for pipeline in pipelines:
        names = [n for n, p in space.params.items() if p.applies(pipeline)]
        for values in product(*[space.params[n].grid() for n in names]):
            points.append((pipeline, dict(zip(names, values, strict=True))))
    return points


def to_wandb_parameters(space: SearchSpace, pipelines: list[str], grid: bool = False) -> dict[str, Any]:
    """W&B sweep ``parameters``. Conditions cannot be expressed there: a parameter that does not apply
    to a pipeline is still sampled and simply has no effect on it; simplex weights are sampled
    independently and normalised by ``harness trial``. ``grid``: every parameter as its ``values``
    (W&B's grid method rejects distributions such as ``int_uniform``)."""
    params: dict[str, Any] = {PIPELINE_PARAM: {"values": list(pipelines)}}
    for name, p in space.params.items():
        params[name] = {"values": p.grid()} if grid else p.wandb()
    for group in space.simplex:
        for raw in group.raw_names():
            params[raw] = {"distribution": "uniform", "min": 1e-6, "max": 1.0}
    return params


def normalise_raw(params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """Turn ``simplex.<field>`` raw draws (from W&B) into normalised weights on the real fields."""
    out = {k: v for k, v in params.items() if not k.startswith(SIMPLEX_PREFIX)}
    for group in space.simplex:
        raw = [params.get(n) for n in group.raw_names()]
        values = [float(v) for v in raw if v is not None]
        if len(values) == len(raw):
            out.update(zip(group.fields, simplex_weights(values), strict=True))
    return out
