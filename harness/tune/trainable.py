"""One trial of a study, wherever it runs: a Ray Tune function trainable, a final re-run, ``harness trial``.

The trial protocol the scheduler and the searcher rely on: intermediate reports carry the current
stage's validation metric as ``proxy`` (what ASHA compares, oriented like the objective) at its
stage-aligned time ``stage_time`` with ``final=0`` (see :mod:`harness.tune.timeline`); only a trial's
last report (``final=1``) carries the objective. A trial stopped by the scheduler therefore never has a
final report, and the searcher stores it in Optuna as PRUNED, never as COMPLETE with a proxy value.

Nothing here imports Ray at module level: ``harness trial`` (a W&B agent) runs trials without it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.tune.paths import StudyPaths
from harness.tune.study import StudySpec
from harness.tune.timeline import PROXY, StageTimeline

if TYPE_CHECKING:  # the real import pulls in torch, which the driver does not need for this module
    from harness.engine.fit import EpochCallback

Report = Callable[[dict[str, Any]], None]


def execute_trial(spec: StudySpec, pipeline: str, overrides: dict[str, Any], run_dir: Path, *, store: Path,
                  data_dir: Path | None, subsets: tuple[str, ...], report: Report | None = None,
                  tracker_dir: Path | None = None, tracker_name: str | None = None, threads: int | None = None,
                  check_data: bool = True, epoch_hooks: Sequence[EpochCallback] = (),
                  folds: int | None = None) -> dict[str, Any]:
    """Run one trial: config from the spec, `run_trial`, W&B tracking, optional per-epoch `report`.

    Shared by Ray trials, final re-runs and ``harness trial`` (W&B agent), so the three cannot drift.
    ``epoch_hooks`` run after every epoch before anything is logged or reported; callers (and tests,
    e.g. fault injection) add behaviour there instead of through environment variables.
    ``folds`` (default: the spec's ``selection.folds``; final runs pass 1) K > 1 runs the config on every
    cross-validation fold in ``run_dir/fold<k>`` and reports the mean over folds (see
    :mod:`harness.tune.folds`); only fold 0 reports per epoch, so the scheduler compares the same fold
    of every trial and a trial's report count does not grow with K.
    """
    from harness.pipelines.run import run_trial
    from harness.tune.folds import fold_runs, report_fields, summarise_folds, write_folds
    from harness.tune.tracking import TrialTracker

    params = dict(overrides)
    if threads:
        params["runtime.threads"] = threads
    config = spec.run_config(pipeline, params, data_dir)
    tracker = TrialTracker(enabled=spec.wandb.enabled, project=spec.wandb.project, group=spec.name,
                           name=tracker_name or run_dir.name, config={"pipeline": pipeline, **overrides},
                           directory=tracker_dir or run_dir, mode=spec.wandb.mode)
    objectives = [o.metric for o in spec.objectives]
    timeline = StageTimeline.of(spec, pipeline) if report is not None else None

    def on_epoch(stage: str, record: dict[str, Any]) -> None:
        tracker.log_epoch(stage, record)
        if report is not None and timeline is not None:
            report({**timeline.report(stage, record), **dict.fromkeys(objectives, float(record["val_metric"])),
                    "final": 0})

    def log_fold(k: int) -> EpochCallback:
        return lambda stage, record: tracker.log_epoch(f"fold{k}/{stage}", record)

    runs = fold_runs(run_dir, spec.selection.folds if folds is None else folds)
    results = []
    try:
        for k, (fold_dir, fold_params) in enumerate(runs):
            fold_config = spec.run_config(pipeline, {**params, **fold_params}, data_dir) if fold_params else config
            hooks = [*epoch_hooks, on_epoch if k == 0 else log_fold(k)]
            results.append(run_trial(fold_config, fold_dir, data_dir=data_dir, store_root=store, callbacks=hooks,
                                     subsets=subsets, progress=False, check_data=check_data))
    except BaseException:
        tracker.finish({}, failed=True)
        raise
    result = results[0]
    metrics: dict[str, Any] = result.metrics
    fold_fields: dict[str, Any] = {}
    if len(results) > 1:
        summary = summarise_folds([r.metrics for r in results], objectives)
        write_folds(run_dir, summary, [d for d, _ in runs])
        metrics, fold_fields = summary["mean"], report_fields(summary)
    final: dict[str, Any] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if result.test_metrics and len(results) == 1:
        final.update({f"test/{k}": v for k, v in result.test_metrics.items() if isinstance(v, (int, float))})
    final.update({"final": 1, PROXY: metrics.get(objectives[0], math.nan), "seconds": sum(r.seconds for r in results),
                  "trained_stages": sum(len(r.trained_stages) for r in results), "run_dir": str(run_dir),
                  **fold_fields})
    tracker.finish(final)
    return final


def ray_trainable(config: dict[str, Any], spec_json: str, study_dir: str, data_dir: str | None, mode: str,
                  epoch_hooks: Sequence[EpochCallback] = ()) -> None:
    """Ray Tune function trainable (module level so that Ray can pickle it by reference).

    ``mode="search"``: ``config`` holds the searcher's ``_pipeline`` and ``_overrides``; the trial
    evaluates on val and reports every epoch. ``mode="final"``: ``config["run"]`` names a pipeline,
    the best overrides and a seed; the run evaluates on val and test and reports once.
    """
    from ray import tune

    spec = StudySpec.model_validate_json(spec_json)
    paths = StudyPaths(Path(study_dir))
    trial_id = tune.get_context().get_trial_id()
    subsets: tuple[str, ...]
    if mode == "final":  # trained on the study split's train part, whatever selection.folds is
        run = config["run"]
        pipeline, overrides = run["pipeline"], {**run["overrides"], "runtime.seed": run["seed"]}
        run_dir = paths.final / run["dir"] if run.get("dir") else paths.final_run(pipeline, run["seed"])
        subsets = ("val", "test")
        name, report, folds = run_dir.name, None, 1
    else:
        pipeline, overrides = config["_pipeline"], config["_overrides"]
        run_dir, subsets, name, report = paths.trials / trial_id, ("val",), trial_id, tune.report
        folds = spec.selection.folds
    try:
        required = tune.get_context().get_trial_resources().required_resources
    except Exception:  # noqa: BLE001 - not inside a Tune session with resources
        required = {}
    cpus = max(1, int(required.get("CPU", 1)))
    _write_trial_info(run_dir, trial_id, required)
    result = execute_trial(spec, pipeline, overrides, run_dir, store=paths.store,
                           data_dir=Path(data_dir) if data_dir else None, subsets=subsets, report=report,
                           tracker_dir=paths.wandb, tracker_name=name, threads=cpus,
                           check_data=False,  # the driver checked the dataset once before the trials
                           epoch_hooks=epoch_hooks, folds=folds)
    tune.report(result)


def _write_trial_info(run_dir: Path, trial_id: str, resources: dict[str, Any]) -> None:
    """Where a trial ran: node, process, resources and the GPU it was given."""
    import socket

    import ray

    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"trial_id": trial_id, "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "pid": os.getpid(), "resources": resources, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started": time.time()}
    (run_dir / "trial.json").write_text(json.dumps(info, indent=2))
