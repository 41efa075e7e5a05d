"""The study part of the report: trials over time, best value so far, parameter importances and
the best configuration of each pipeline, read from the study's Optuna RDB (``optuna.db``).

A study keeps each pipeline in its own Optuna study ``<study>:<pipeline>`` (user attributes ``study``
and ``pipeline``); they are read back as one :class:`StudySummary`. A database written before that
(one study for all pipelines, trials tagged with the user attribute ``pipeline``) reads the same way.
Only the first objective is plotted for a multi-objective study. Trials that ASHA stopped early are
stored as PRUNED (no value), so "best" here is always a trial evaluated with its full budget.

Parameters are shown as the trial's run used them: a simplex's raw draws (``simplex.<field>``) are
replaced by the normalised weights from the trial's ``overrides`` user attribute, in the trials table,
the importances and the best configurations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.figures import color as pipeline_color
from harness.report.figures import styled, subplots
from harness.tune.space import SIMPLEX_PREFIX

logger = logging.getLogger(__name__)


@dataclass
class StudySummary:
    """Plain tables extracted from one study (its per-pipeline Optuna studies, or a legacy single one)."""

    name: str
    objective: str
    direction: str  # "maximize" | "minimize"
    trials: pd.DataFrame  # number (in its pipeline's study), pipeline, state, value, datetimes, params_*
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _objective_name(study) -> str:
    spec = study.user_attrs.get("spec") or {}
    objectives = spec.get("objectives") or []
    if objectives and isinstance(objectives[0], dict) and objectives[0].get("metric"):
        return str(objectives[0]["metric"])
    names = getattr(study, "metric_names", None)
    return str(names[0]) if names else "objective"


def effective_params(trial) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, distributions) of a trial as its run used them: each raw simplex draw
    ``simplex.<field>`` becomes ``<field>`` with the normalised weight from the ``overrides`` user
    attribute (a weight in [0, 1]); raw draws without an override are kept as they are."""
    from optuna.distributions import FloatDistribution

    overrides = trial.user_attrs.get("overrides") or {}
    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}
    for name, value in trial.params.items():
        field_name = name.removeprefix(SIMPLEX_PREFIX)
        if name.startswith(SIMPLEX_PREFIX) and isinstance(overrides.get(field_name), (int, float)):
            params[field_name], dists[field_name] = float(overrides[field_name]), FloatDistribution(0.0, 1.0)
        else:
            params[name], dists[name] = value, trial.distributions[name]
    return params, dists


def trials_table(study) -> pd.DataFrame:
    """One row per trial with its pipeline, state, first objective value, times and effective params."""
    rows = []
    default = study.user_attrs.get("pipeline", "?")  # a queued trial has no attributes yet
    for t in study.get_trials(deepcopy=False):
        params, _ = effective_params(t)
        rows.append({"number": t.number, "pipeline": str(t.user_attrs.get("pipeline", default)).upper(),
                     "state": t.state.name, "value": float(t.values[0]) if t.values else np.nan,
                     "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
                     **{f"params_{k}": v for k, v in params.items()}})
    return pd.DataFrame(rows)


def best_so_far(values: np.ndarray, direction: str) -> np.ndarray:
    """Running best (NaN ignored) of a sequence of objective values."""
    v = np.asarray(values, dtype=float)
    fill = -np.inf if direction == "maximize" else np.inf
    acc = (np.maximum if direction == "maximize" else np.minimum).accumulate(np.where(np.isnan(v), fill, v))
    return np.where(np.isinf(acc), np.nan, acc)


def importances(study, pipeline: str, seed: int = 0) -> tuple[dict[str, float], str | None]:
    """fANOVA importances over the COMPLETE trials of one pipeline (effective params), or ({}, why not)."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if str(t.user_attrs.get("pipeline", "")).upper() == pipeline]
    if len(complete) < 2:
        return {}, f"pipeline {pipeline}: {len(complete)} complete trial(s); importances need at least 2"
    effective = [(*effective_params(t), t.values) for t in complete]
    common = set.intersection(*(set(params) for params, _, _ in effective))
    varying = sorted(p for p in common if len({repr(params[p]) for params, _, _ in effective}) > 1)
    if not varying:
        return {}, f"pipeline {pipeline}: no parameter takes more than one value in its complete trials"
    if len({values[0] for _, _, values in effective}) < 2:
        return {}, f"pipeline {pipeline}: every complete trial has the same objective value"
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials([optuna.trial.create_trial(params={k: params[k] for k in common},
                                              distributions={k: dists[k] for k in common}, values=values)
                    for params, dists, values in effective])
    try:
        imp = optuna.importance.get_param_importances(
            sub, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed), params=varying,
            target=lambda t: t.values[0])
    except (ValueError, RuntimeError) as e:
        return {}, f"pipeline {pipeline}: importances failed ({e})"
    return {k: float(v) for k, v in imp.items()}, None


def load_study_summaries(study_dir: Path) -> list[StudySummary]:
    """Every study in ``study_dir/optuna.db`` (none when the file is absent)."""
    db = study_dir / "optuna.db"
    if not db.exists():
        return []
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" lines; restored below
    try:
        return _summaries(db)
    finally:
        optuna.logging.set_verbosity(previous)


def _summaries(db: Path) -> list[StudySummary]:
    """Read-only: the report never writes to (nor creates tables in) the file it is given."""
    from harness.tune.storage import open_readonly, reading

    storage = open_readonly(db)
    with reading(str(db)):
        return _read_summaries(storage)


def _read_summaries(storage) -> list[StudySummary]:
    import optuna

    names = optuna.get_all_study_names(storage=storage)
    groups: dict[str, list] = {}  # study name -> its Optuna studies (one per pipeline, or one legacy study)
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        parent = study.user_attrs.get("study") if study.user_attrs.get("pipeline") else None
        groups.setdefault(str(parent or name), []).append(study)
    out = []
    for name, studies in groups.items():
        first = studies[0]
        tables = [t for t in (trials_table(st) for st in studies) if not t.empty]
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        s = StudySummary(name, _objective_name(first), first.directions[0].name.lower(), table)
        legacy = len(studies) == 1 and not first.user_attrs.get("pipeline")
        if legacy and not table.empty and table["pipeline"].nunique() > 1:
            s.notes.append(f"{name} was written before each pipeline had its own Optuna study: one sampler shared the "
                           "trial budget among the pipelines, so their trial counts may differ.")
        if len(first.directions) > 1:
            s.notes.append(f"{name} has {len(first.directions)} objectives; plots show the first ({s.objective}).")
        for st in studies:
            pipes = {str(t.user_attrs["pipeline"]).upper() for t in st.get_trials(deepcopy=False)
                     if "pipeline" in t.user_attrs}
            for p in sorted(pipes):
                imp, why = importances(st, p)
                if imp:
                    s.importances[p] = imp
                elif why:
                    s.notes.append(f"Parameter importances skipped for {why}.")
        out.append(s)
    return out


def best_configs(s: StudySummary) -> pd.DataFrame:
    """Best COMPLETE trial of each pipeline with its params (one row per pipeline)."""
    t = s.trials
    if t.empty:
        return pd.DataFrame()
    done = t[(t["state"] == "COMPLETE") & t["value"].notna()]
    rows = []
    for p, g in done.groupby("pipeline"):
        best = g.loc[g["value"].idxmax() if s.direction == "maximize" else g["value"].idxmin()]
        params = {k.removeprefix("params_"): best[k]
                  for k in g.columns if k.startswith("params_") and pd.notna(best[k])}
        rows.append({"pipeline": p, "trial": int(best["number"]), s.objective: float(best["value"]), **params})
    return pd.DataFrame(rows)


def state_counts(s: StudySummary) -> pd.DataFrame:
    """Trials per pipeline and state (COMPLETE / PRUNED / FAIL / RUNNING / WAITING)."""
    if s.trials.empty:
        return pd.DataFrame()
    return s.trials.pivot_table(index="pipeline", columns="state", values="number", aggfunc="count",
                                fill_value=0).reset_index().rename_axis(columns=None)


@styled
def trials_figure(s: StudySummary):
    """Objective per trial (by number and by completion time) with the best value so far."""
    fig, axes = subplots(2, w=4.8, h=3.3)
    t = s.trials
    for p in sorted(set(t["pipeline"])):
        g = t[t["pipeline"] == p].sort_values("number")
        color = pipeline_color(p)
        ok = g["state"] == "COMPLETE"
        for ax, x in ((axes[0, 0], g["number"]), (axes[0, 1], g["datetime_complete"])):
            ax.scatter(x[ok], g["value"][ok], s=16, color=color, alpha=0.75, label=f"Pipeline {p}")
            other = ~ok & g["value"].notna()
            if other.any():
                ax.scatter(x[other], g["value"][other], s=16, facecolors="none", edgecolors=color, alpha=0.7,
                           label=f"Pipeline {p} (pruned/other)")
        best = best_so_far(np.where(ok, g["value"], np.nan), s.direction)
        axes[0, 0].step(g["number"], best, where="post", color=color, lw=1.6, alpha=0.9)
        done = g[g["datetime_complete"].notna()].sort_values("datetime_complete")
        done_ok = done["state"] == "COMPLETE"
        axes[0, 1].step(done["datetime_complete"], best_so_far(np.where(done_ok, done["value"], np.nan), s.direction),
                        where="post", color=color, lw=1.6, alpha=0.9)
    axes[0, 0].set_xlabel("trial number")
    axes[0, 1].set_xlabel("completed at")
    axes[0, 1].tick_params(axis="x", labelrotation=25)
    for ax in axes[0]:
        ax.set_ylabel(s.objective)
    axes[0, 0].legend(fontsize=7.5)
    fig.suptitle(f"Study {s.name}: {s.objective} ({s.direction}); lines: best so far", fontsize=10)
    fig.tight_layout()
    return fig


@styled
def importance_figure(s: StudySummary):
    """Horizontal bars of fANOVA importances, one panel per pipeline."""
    pipes = sorted(s.importances)
    n_params = max(len(v) for v in s.importances.values())
    fig, axes = subplots(len(pipes), w=4.4, h=0.6 + 0.32 * n_params)
    for ax, p in zip(axes[0], pipes, strict=True):
        items = sorted(s.importances[p].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color=pipeline_color(p))
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title(f"Pipeline {p}")
    fig.tight_layout()
    return fig
