"""Study specs (``studies/*.yaml``): which pipelines, which search space, objective(s), budget,
sampler, scheduler, resources, final seeds, data and tracking. Validated with every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from harness import resources as bundled
from harness.config import (
    SEED_MAX,
    RunConfig,
    Seed,
    Strict,
    apply_overrides,
    check_name,
    field_problem,
    format_validation_error,
    read_text,
    resolve_config_source,
)
from harness.errors import ConfigError, did_you_mean
from harness.pipelines.registry import get_pipeline, pipeline_names, require_registered
from harness.tune.space import SearchSpace, grid, grid_size


class Objective(Strict):
    metric: str = "balanced_accuracy"
    direction: Literal["maximize", "minimize"] | None = None

    @model_validator(mode="after")
    def _known(self) -> Objective:
        from harness.metrics.registry import list_metrics

        keys = [m.key for m in list_metrics()]
        if self.metric not in keys:
            raise ValueError(f'unknown metric "{self.metric}"; registered: {", ".join(keys)}.'
                             + did_you_mean(self.metric, keys))
        return self

    @property
    def mode(self) -> str:
        """The direction to optimise: the study's, else the metric's declared direction (registry)."""
        from harness.metrics.registry import metric_direction

        if self.direction:
            return "max" if self.direction == "maximize" else "min"
        return metric_direction(self.metric)


class SchedulerSpec(Strict):
    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(2, ge=1, description="epochs every trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class ResourceSpec(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float | Literal["auto"] = Field("auto", description="auto: 0.5 per trial when CUDA is present, else 0")

    def per_trial(self, cuda_available: bool) -> dict[str, float]:
        gpu = (0.5 if cuda_available else 0.0) if self.gpu == "auto" else float(self.gpu)
        return {"cpu": self.cpu, "gpu": gpu}


class FinalSpec(Strict):
    """What runs after the search, on the held-out test subset.

    ``mode: best`` re-runs each pipeline's best configuration with every seed (Table 9);
    ``mode: levels`` runs every level of every ablation axis at the reference configuration
    (harness.tune.levels) and the report adds the ablation table.
    """

    enabled: bool = True
    seeds: list[Seed] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    mode: Literal["best", "levels"] = "best"
    reference: dict[str, Any] = Field(
        default_factory=dict, description="dotted fields of the reference configuration (default: the base preset)")
    reference_pipeline: str | None = Field(None, description="reference level of the pipeline axis (default: first)")
    levels: dict[str, list[Any]] = Field(
        default_factory=dict, description="axis -> levels, instead of the search space's grid")


class StudyData(Strict):
    dir: Path | None = None
    split: str = "study"
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1, description="held out: select on val, report on test")
    split_seed: Seed = 42
    group_duplicates: bool = Field(False, description="keep near-duplicate images in one subset (when the split "
                                   "is created); BUSI needs it")


class SelectionSpec(Strict):
    """How a trial is scored for selection: on the study split's validation subset (``folds: 1``), or as
    the mean over K patient-wise stratified cross-validation folds of the non-test images."""

    folds: int = Field(1, ge=1, le=20, description="1: the study split's val subset; K > 1: K-fold CV "
                       "(splits/<split>.fold<k>of<K>.json), objective = mean over folds")


class WandbSpec(Strict):
    enabled: bool = True
    project: str = "harness"
    entity: str | None = Field(None, description="W&B team or user (default: the logged-in user's default entity)")
    mode: Literal["offline", "online", "disabled"] | None = Field(
        None, description="None: WANDB_MODE if set, else online when logged in (WANDB_API_KEY or ~/.netrc), "
                          "else offline")


class StudySpec(Strict):
    name: str = Field(description="names the study directory runs/studies/<name> and its Optuna studies")
    description: str = ""
    pipelines: list[str] = Field(default_factory=lambda: ["a", "b"], min_length=1,
                                 description="registered pipelines (task orders) to compare, in report order")
    base: dict[str, str] = Field(default_factory=dict,
                                 description="pipeline -> preset or YAML; default: each pipeline's paper preset")
    plugins: list[str] = Field(default_factory=list, description="modules or .py files that register pipelines")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted config fields for every trial")
    search_space: SearchSpace = SearchSpace()
    objectives: list[Objective] = Field(default_factory=lambda: [Objective()], min_length=1, max_length=3)
    trials: int | None = Field(None, ge=1, description="None with the grid sampler: the whole grid")
    trials_per_pipeline: int | dict[str, int] | None = Field(
        None, description="each pipeline's trial budget (one number, or pipeline -> trials); "
                          "default: `trials` split equally")
    time_budget_minutes: float | None = Field(None, gt=0)
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: Seed = Field(42, description="sampler seed; pipeline k's sampler uses seed + k")
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourceSpec = ResourceSpec()
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)
    final: FinalSpec = FinalSpec()
    data: StudyData = StudyData()
    selection: SelectionSpec = SelectionSpec()
    wandb: WandbSpec = WandbSpec()

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, raw: Any) -> Any:
        """Plug-in pipelines must be registered before ``pipelines`` is validated."""
        if isinstance(raw, dict) and isinstance(raw.get("plugins"), list):
            from harness.plugins import load_plugins

            load_plugins([str(p) for p in raw["plugins"]])
        return raw

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("pipelines")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        require_registered(value)
        if len(set(value)) != len(value):
            raise ValueError(f"pipelines repeat: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        names = pipeline_names()
        unknown = [p for p in self.base if p not in names]
        if unknown:
            raise ValueError(f"base names unknown pipeline(s) {unknown}; registered: {', '.join(names)}."
                             + did_you_mean(unknown[0], names))
        missing = [p for p in self.pipelines if p not in self.base and not get_pipeline(p).base_preset]
        if missing:
            raise ValueError(f"base has no config for pipeline(s) {missing}; "
                             f"add e.g. base: {{{missing[0]}: tiny-{missing[0]}}}")
        if self.seed + len(self.pipelines) - 1 > SEED_MAX:
            raise ValueError(f"seed + (number of pipelines - 1) must be <= {SEED_MAX} (pipeline k's sampler uses "
                             f"seed + k), but got seed={self.seed}")
        if self.sampler == "grid":
            grid(self.search_space, list(self.pipelines))  # raises for simplexes, missing steps, too big a grid
        elif self.trials is None and self.trials_per_pipeline is None:
            raise ValueError(f"trials (or trials_per_pipeline) must be set for the {self.sampler} sampler")
        self._check_trials_per_pipeline()
        return self

    def _check_trials_per_pipeline(self) -> None:
        per = self.trials_per_pipeline
        if per is None:
            return
        counts = per if isinstance(per, dict) else dict.fromkeys(self.pipelines, per)
        if set(counts) != set(self.pipelines):
            raise ValueError(f"trials_per_pipeline must name every pipeline of {list(self.pipelines)} once, "
                             f"but names {sorted(counts)}")
        if any(n < 1 for n in counts.values()):
            raise ValueError(f"trials_per_pipeline must be >= 1 for every pipeline, but got {counts}")
        if self.trials is not None and sum(counts.values()) != self.trials:
            raise ValueError(f"trials={self.trials} differs from the sum of trials_per_pipeline "
                             f"({sum(counts.values())}); set one of them")

    @property
    def n_trials(self) -> int:
        if self.trials is not None:
            return self.trials
        if self.trials_per_pipeline is not None:
            per = self.trials_per_pipeline
            return sum(per.values()) if isinstance(per, dict) else per * len(self.pipelines)
        return grid_size(self.search_space, list(self.pipelines))

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def run_config(self, pipeline: str, params: dict[str, Any], data_dir: Path | None = None) -> RunConfig:
        """The trial's config: base preset + study overrides + the study split + sampled params."""
        raw, where = resolve_config_source(self.base.get(pipeline) or get_pipeline(pipeline).base_preset)
        data = {"data.split": self.data.split, "data.val_fraction": self.data.val_fraction,
                "data.test_fraction": self.data.test_fraction, "data.split_seed": self.data.split_seed,
                "data.group_duplicates": self.data.group_duplicates}
        if data_dir or self.data.dir:
            data["data.dir"] = str(data_dir or self.data.dir)
        raw = apply_overrides(raw, {**self.overrides, **data, **params, "pipeline": pipeline})
        try:
            return RunConfig.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, RunConfig, f"study {self.name}, {where}")) from None


def _load_space(value: Any, study_path: Path) -> Any:
    """A search space given by name (search_spaces/<name>.yaml), path, or inline mapping."""
    if not isinstance(value, str):
        return value
    candidates = [study_path.parent / value, Path(value),
                  study_path.parent.parent / "search_spaces" / f"{value}.yaml", Path("search_spaces") / f"{value}.yaml"]
    shipped = bundled.path(bundled.SEARCH_SPACES, value)  # after the user's files: theirs win
    for c in [*candidates, *([shipped] if shipped else [])]:
        if c.is_file():
            try:
                data = yaml.safe_load(read_text(c)) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{c}: not valid YAML ({getattr(e, 'problem', e)}).") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{c}: expected a mapping with params/simplex.")
            return data
    looked = ", ".join(map(str, candidates[:3]))
    known = bundled.names(bundled.SEARCH_SPACES)
    raise ConfigError(f'{study_path}: search_space "{value}" not found (looked in {looked} and the shipped '
                      f'search spaces: {", ".join(known)}).' + did_you_mean(value, known))


def find_study(ref: Path | str) -> Path:
    """A study file by path, else by name: ``./studies/<name>.yaml`` (the user's), else the shipped one."""
    path = Path(ref)
    if path.is_file():
        return path
    local = Path("studies") / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and local.is_file():
        return local
    shipped = bundled.path(bundled.STUDIES, str(ref)) if path.parent == Path(".") else None
    if shipped is not None:
        return shipped
    known = bundled.names(bundled.STUDIES)
    raise ConfigError(f"{path}: no such study file, nor a shipped study of that name (shipped: {', '.join(known)})."
                      + did_you_mean(path.stem, known))


def load_study(path: Path | str, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a study YAML (a path, or a name: see :func:`find_study`); every problem in one
    :class:`ConfigError`; bases are checked too."""
    path = find_study(path)
    try:
        raw = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of study fields, but got {type(raw).__name__}.")
    raw.setdefault("name", path.stem)
    if "search_space" in raw:
        raw["search_space"] = _load_space(raw["search_space"], path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        problems = format_validation_error(err, StudySpec, str(path))
        if not any(e["loc"][:1] == ("search_space",) for e in err.errors()):  # else already reported
            problems += _space_field_problems(raw.get("search_space"), str(path))
        raise ConfigError(problems) from None
    problems = []
    for pipeline in spec.pipelines:
        try:
            spec.run_config(pipeline, {})
        except ConfigError as e:
            problems += e.problems
    _check_space_bounds(spec, problems)
    if not problems:
        _check_final_levels(spec, problems)
    if problems:
        raise ConfigError(problems)
    return spec


def _check_final_levels(spec: StudySpec, problems: list[str]) -> None:
    """``final.mode: levels``: every planned final run gives a valid run config, and every key of
    ``final.levels`` is an ablation axis (a misspelt one would be ignored). Checked at load, not after the
    search."""
    if spec.final.mode != "levels":
        return
    from harness.tune.levels import axes, plan

    names = [a.name for a in axes(spec)]
    for key in spec.final.levels:
        if key not in names:
            problems.append(f"final.levels.{key}: not an ablation axis of this study (its axes: {', '.join(names)})."
                            + did_you_mean(key, names))
    try:
        runs = plan(spec)
    except ConfigError as e:
        problems.append(f"final.reference gives an invalid config: {e.problems[0]}")
        return
    seen: set[tuple[str, str]] = set()
    for run in runs:  # each variant once (its seeds share the config)
        if (run.pipeline, run.variant) in seen:
            continue
        seen.add((run.pipeline, run.variant))
        try:
            spec.run_config(run.pipeline, run.overrides)
        except ConfigError as e:
            problems.append(f"final run {run.dir_name} gives an invalid config: {e.problems[0]}")


def _space_field_problems(space: Any, where: str) -> list[str]:
    """Search-space names that are no run-config field, for a study whose spec is invalid too (so that both
    kinds of problem are reported together; a valid spec checks every value through its base configs)."""
    if not isinstance(space, dict):
        return []
    params, simplex = space.get("params"), space.get("simplex")
    names = [f"params.{name}" for name in params] if isinstance(params, dict) else []
    for k, group in enumerate(simplex if isinstance(simplex, list) else []):
        if isinstance(group, dict) and isinstance(group.get("fields"), list):
            names += [f"simplex[{k}].{f}" for f in group["fields"]]
    problems = []
    for name in names:
        why = field_problem(name.split(".", 1)[1])
        if why:
            problems.append(f"search_space.{name}: not a run config field: {why} ({where})")
    return problems


def _check_space_bounds(spec: StudySpec, problems: list[str]) -> None:
    """Every search-space extreme must give a valid run config (caught before any trial starts)."""
    for name, p in spec.search_space.params.items():
        values = p.extremes()
        for pipeline in spec.pipelines:
            if not p.applies(pipeline):
                continue
            for v in values:
                try:
                    spec.run_config(pipeline, {name: v})
                except ConfigError as e:
                    problems.append(f"search_space.params.{name}={v!r} gives an invalid config: {e.problems[0]}")
                    break
    for k, group in enumerate(spec.search_space.simplex):
        applies = next((p for p in spec.pipelines if group.applies(p)), None)
        if applies is None:
            continue
        try:
            spec.run_config(applies, dict.fromkeys(group.fields, 1 / len(group.fields)))
        except ConfigError as e:
            problems.append(f"search_space.simplex[{k}] names a field that is not a config field: {e.problems[0]}")
