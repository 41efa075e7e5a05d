"""`harness study status`: the trials of a study as a table, and the best so far."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.errors import ConfigError
from harness.tune.bookkeeping import best_trials, load_studies, open_storage, trial_budgets
from harness.tune.paths import StudyPaths
from harness.tune.storage import open_readonly, reading, redact_url
from harness.tune.study import StudySpec


def load_spec(study_dir: Path) -> StudySpec:
    """The resolved spec a study run saved in ``STUDY_DIR/study.yaml``; any problem is a :class:`ConfigError`."""
    import yaml
    from pydantic import ValidationError

    from harness.config import format_validation_error, read_text

    path = StudyPaths(Path(study_dir)).spec
    if not path.is_file():
        raise ConfigError(f"{study_dir}: no study.yaml there; is this a study directory (harness study run --out)?")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({getattr(e, 'problem', e)}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected the mapping of study fields a study run writes, but got "
                          f"{type(raw).__name__}.")
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, StudySpec, str(path))) from None


def study_table(study_dir: Path, storage_url: str | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per trial: pipeline, number (in its pipeline's study), state, objective values, seconds,
    params; and the best trial of each pipeline. Reads per-pipeline studies and legacy single ones."""
    spec = load_spec(study_dir)
    paths = StudyPaths(Path(study_dir))
    if storage_url is None and not paths.db.exists():
        raise ConfigError(f"{paths.db}: no Optuna storage yet; start the study with `harness study run`.")
    storage = open_storage(storage_url) if storage_url else open_readonly(paths.db)  # status never writes
    shown = redact_url(storage_url) if storage_url else str(paths.db)
    with reading(shown):
        return _table(spec, load_studies(spec, storage), shown, paths)


def _table(spec: StudySpec, studies: dict, shown: str, paths: StudyPaths) -> tuple[pd.DataFrame, dict]:
    """The table of :func:`study_table` from the loaded Optuna studies (``shown`` names the storage)."""
    if not studies:
        raise ConfigError(f"{shown}: no study named {spec.name} "
                          f"(nor its per-pipeline studies {spec.name}:<pipeline>).")
    rows = []
    for study in studies.values():
        for t in study.trials:
            values = t.values or [math.nan] * len(spec.objectives)
            seconds = math.nan
            if t.datetime_complete and t.datetime_start:
                seconds = (t.datetime_complete - t.datetime_start).total_seconds()
            state = t.state.name + (" (interrupted)" if t.user_attrs.get("interrupted") else "")
            pipeline = t.user_attrs.get("pipeline", study.user_attrs.get("pipeline", t.params.get("pipeline", "")))
            trial_dir = paths.trial_of(t.user_attrs)
            rows.append({"pipeline": pipeline, "number": t.number,
                         "state": state, **{o.metric: v for o, v in zip(spec.objectives, values, strict=False)},
                         "seconds": seconds,
                         "trial_dir": str(trial_dir.relative_to(paths.root)) if trial_dir else "",
                         "params": json.dumps(t.user_attrs.get("overrides", {}), sort_keys=True)})
    table = pd.DataFrame(rows)
    if not table.empty:
        order = {p: k for k, p in enumerate(spec.pipelines)}
        table = table.sort_values(["pipeline", "number"], key=lambda c: c.map(order) if c.name == "pipeline" else c,
                                  ignore_index=True)
    table.attrs["budgets"] = trial_budgets(spec)
    return table, best_trials(studies.values(), spec)


def status_json(table: pd.DataFrame, best: dict) -> dict:
    """``study status --json``: every trial (as in the table, params as a mapping, NaN as null), each
    pipeline's finished trials against its budget, and the best trial of each pipeline."""
    budgets = table.attrs.get("budgets") or {}
    trials = []
    for row in table.to_dict(orient="records"):
        row = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        row["params"] = json.loads(row["params"]) if row.get("params") else {}
        trials.append(row)
    finished = {p: sum(1 for r in trials if r["pipeline"] == p and r["state"] in ("COMPLETE", "PRUNED", "FAIL"))
                for p in budgets}
    return {"trials": trials, "budgets": {p: {"finished": finished[p], "budget": n} for p, n in budgets.items()},
            "best": {p: {"number": t.number, "values": list(t.values), "trial_dir": t.user_attrs.get("trial_dir"),
                         "params": t.user_attrs.get("overrides", {})} for p, t in sorted(best.items())}}


def format_status(table: pd.DataFrame, best: dict) -> str:
    if table.empty:
        return "no trials yet"
    counts = table.state.value_counts().to_dict()
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.4f}", max_colwidth=80), "",
             "states: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    budgets = table.attrs.get("budgets") or {}
    if budgets:
        finished = table[table.state.isin(["COMPLETE", "PRUNED", "FAIL"])].groupby("pipeline").size()
        lines.append("finished / budget: " + ", ".join(f"{p} {int(finished.get(p, 0))}/{n}"
                                                       for p, n in budgets.items()))
    for p, t in sorted(best.items()):
        lines.append(f"best {p}: trial {t.number} values={[round(v, 4) for v in t.values]} "
                     f"{json.dumps(t.user_attrs.get('overrides', {}), sort_keys=True)}")
    return "\n".join(lines)
