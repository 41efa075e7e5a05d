"""The same search as a native W&B sweep: sweep YAML export and the agent-side trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.tune.space import PIPELINE_PARAM, normalise_raw, to_wandb_parameters
from harness.tune.study import StudySpec

METHODS = {"tpe": "bayes", "random": "random", "grid": "grid"}


def wandb_sweep(spec: StudySpec, study_path: str | Path) -> dict[str, Any]:
    """W&B sweep config equivalent to the study (conditions become no-ops; see to_wandb_parameters)."""
    objective = spec.objectives[0]
    return {
        "name": spec.name,
        "description": spec.description or f"harness study {spec.name}",
        "program": "harness",
        "method": METHODS[spec.sampler],
        "metric": {"name": objective.metric, "goal": "maximize" if objective.mode == "max" else "minimize"},
        "parameters": to_wandb_parameters(spec.search_space, list(spec.pipelines)),
        "command": ["${env}", "harness", "trial", "--study", str(study_path), "${args_no_hyphens}"],
        **({"run_cap": spec.trials} if spec.trials else {}),
    }


def run_agent_trial(spec: StudySpec, params: dict[str, Any], out: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """One trial under `wandb agent` (params arrive as key=value args and in wandb.config)."""
    from harness.tune.paths import StudyPaths
    from harness.tune.trainable import execute_trial

    params = normalise_raw(dict(params), spec.search_space)
    pipeline = str(params.pop(PIPELINE_PARAM, spec.pipelines[0]))
    store = StudyPaths(out.parent).store
    return execute_trial(spec, pipeline, params, out, store=store, data_dir=data_dir, subsets=("val",),
                         tracker_dir=out, tracker_name=out.name, folds=spec.selection.folds)
