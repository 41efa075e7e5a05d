"""The same search as a native W&B sweep: sweep YAML export and the agent-side trial.

The sweep carries what W&B cannot take from ``wandb.init`` inside an agent: the ``project`` (and
``entity``), the dataset (``--data`` in the command), the first objective as ``metric`` (the others are
logged in every run's summary with their own ``define_metric``), ``early_terminate`` mapped from ASHA
and parameter forms its ``method`` accepts (``grid`` takes only ``values``).

W&B's hyperband compares every run of a sweep at the same history index. Across pipelines that index
means different stages (A's classifier epoch 3 against B's segmenter epoch 3), so ``early_terminate``
is written only for a one-pipeline sweep (``--pipeline``, one sweep per pipeline as a study has one
Optuna study per pipeline); the runs of such a sweep log the stage-aligned proxy under the objective's
name every epoch (``harness trial --epoch-objective``), which is what hyperband reads.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from harness.tune.bookkeeping import trial_budgets
from harness.tune.space import PIPELINE_PARAM, normalise_raw, to_wandb_parameters
from harness.tune.study import StudySpec

METHODS = {"tpe": "bayes", "random": "random", "grid": "grid"}
GOALS = {"max": "maximize", "min": "minimize"}


def early_terminate(spec: StudySpec, pipelines: list[str]) -> dict[str, Any] | None:
    """ASHA (grace period, reduction factor) as W&B hyperband (``min_iter``, ``eta``), or None: FIFO, a
    multi-objective study (Tune runs no scheduler then either) or a sweep over several pipelines."""
    if spec.scheduler.type != "asha" or spec.multi_objective or len(pipelines) != 1:
        return None
    eta = spec.scheduler.reduction_factor
    return {"type": "hyperband", "min_iter": spec.scheduler.grace_period, "eta": int(eta) if eta.is_integer() else eta}


def wandb_sweep(spec: StudySpec, study_ref: str | Path, *, data_dir: Path | None = None,
                pipeline: str | None = None) -> dict[str, Any]:
    """W&B sweep config equivalent to the study, or to one pipeline of it (``pipeline``).

    ``study_ref`` is what the agent passes to ``harness trial --study``: a shipped study's name, or
    the study file (made absolute: agents start in their own directory). ``data_dir`` (else the
    study's ``data.dir``) becomes ``--data``. Conditions (``when``) cannot be expressed in a sweep: a
    parameter that does not apply to a pipeline is still sampled and has no effect on it.
    """
    from harness.errors import ConfigError, did_you_mean

    if pipeline is not None and pipeline not in spec.pipelines:
        raise ConfigError(f"--pipeline {pipeline}: not a pipeline of study {spec.name} ({', '.join(spec.pipelines)})."
                          + did_you_mean(pipeline, spec.pipelines))
    pipelines = [pipeline] if pipeline else list(spec.pipelines)
    method = METHODS[spec.sampler]
    first = spec.objectives[0]  # the others are logged by every run (define_metric), not optimised by the sweep
    parameters = to_wandb_parameters(spec.search_space, pipelines, grid=method == "grid")
    if pipeline:
        parameters[PIPELINE_PARAM] = {"value": pipeline}
        parameters = {k: v for k, v in parameters.items()
                      if k == PIPELINE_PARAM or _applies(spec, k, pipeline)}
    ref = Path(study_ref)
    study_arg = str(ref.resolve()) if ref.is_file() else str(study_ref)
    data = data_dir or spec.data.dir
    stop = early_terminate(spec, pipelines)
    command = ["${env}", "harness", "trial", "--study", study_arg,
               *(["--data", str(Path(data).resolve())] if data else []),
               *(["--epoch-objective"] if stop else []), "${args_no_hyphens}"]
    budgets = trial_budgets(spec)
    run_cap = budgets[pipeline] if pipeline else sum(budgets.values())
    objectives = "; ".join(f"{o.metric} ({GOALS[o.mode]}{', the sweep metric' if o is first else ', logged'})"
                           for o in spec.objectives)
    sweep: dict[str, Any] = {
        "name": f"{spec.name}:{pipeline}" if pipeline else spec.name,
        "description": (spec.description or f"harness study {spec.name}").strip() + f" Objectives: {objectives}.",
        "project": spec.wandb.project,
        **({"entity": spec.wandb.entity} if spec.wandb.entity else {}),
        "program": "harness",
        "method": method,
        "metric": {"name": first.metric, "goal": GOALS[first.mode]},
        **({"early_terminate": stop} if stop else {}),
        "parameters": parameters,
        "command": command,
        "run_cap": run_cap,
    }
    return sweep


def _applies(spec: StudySpec, key: str, pipeline: str) -> bool:
    """Whether sweep parameter ``key`` (a field, or a raw simplex draw) applies to ``pipeline``."""
    from harness.tune.space import SIMPLEX_PREFIX

    if key in spec.search_space.params:
        return spec.search_space.params[key].applies(pipeline)
    field = key.removeprefix(SIMPLEX_PREFIX)
    return any(field in g.fields and g.applies(pipeline) for g in spec.search_space.simplex)


def agent_run_dir(spec: StudySpec, root: Path = Path("runs")) -> Path:
    """``runs/sweeps/<study>/<W&B run id>`` under ``wandb agent`` (it sets ``WANDB_RUN_ID``), else a
    timestamp with a random suffix: parallel agents never share a directory."""
    run_id = os.environ.get("WANDB_RUN_ID")
    name = run_id or f"trial-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    return root / "sweeps" / spec.name / name


def run_agent_trial(spec: StudySpec, params: dict[str, Any], out: Path, data_dir: Path | None = None,
                    epoch_objective: bool = False, command: list[str] | None = None) -> dict[str, Any]:
    """One trial under `wandb agent` (params arrive as key=value args and in wandb.config).

    The W&B run id is the agent's (``WANDB_RUN_ID``); outside an agent it derives from the study and
    the run directory, so running the same ``--out`` again continues that W&B run.
    """
    from harness.tune.paths import StudyPaths
    from harness.tune.tracking import stable_run_id
    from harness.tune.trainable import execute_trial

    params = normalise_raw(dict(params), spec.search_space)
    pipeline = str(params.pop(PIPELINE_PARAM, spec.pipelines[0]))
    store = StudyPaths(out.parent).store
    run_id = os.environ.get("WANDB_RUN_ID") or stable_run_id(spec.name, Path(out).resolve())
    return execute_trial(spec, pipeline, params, out, store=store, data_dir=data_dir, subsets=("val",),
                         tracker_dir=out, tracker_name=out.name, folds=spec.selection.folds, job_type="agent",
                         wandb_id=run_id, epoch_objective=epoch_objective,
                         provenance={"command": command, "wandb_sweep_id": os.environ.get("WANDB_SWEEP_ID")})
