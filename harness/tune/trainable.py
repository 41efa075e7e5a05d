"""One trial of a study, wherever it runs: a Ray Tune function trainable, a final re-run, ``harness trial``.

The trial protocol the scheduler and the searcher rely on: intermediate reports carry the current
stage's validation metric as ``proxy`` (what ASHA compares, oriented like the objective) at its
stage-aligned time ``stage_time`` with ``final=0`` (see :mod:`harness.tune.timeline`); only a trial's
last report (``final=1``) carries the objective. A trial stopped by the scheduler therefore never has a
final report, and the searcher stores it in Optuna as PRUNED, never as COMPLETE with a proxy value.

Nothing here imports Ray at module level: ``harness trial`` (a W&B agent) runs trials without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.tune.paths import StudyPaths
from harness.tune.study import StudySpec
from harness.tune.timeline import PROXY, STAGE_TIME, StageTimeline

if TYPE_CHECKING:  # the real import pulls in torch, which the driver does not need for this module
    from harness.engine.fit import EpochCallback
    from harness.tune.tracking import JobType

Report = Callable[[dict[str, Any]], None]


def execute_trial(spec: StudySpec, pipeline: str, overrides: dict[str, Any], run_dir: Path, *, store: Path,
                  data_dir: Path | None, subsets: tuple[str, ...], report: Report | None = None,
                  tracker_dir: Path | None = None, tracker_name: str | None = None, threads: int | None = None,
                  check_data: bool = True, epoch_hooks: Sequence[EpochCallback] = (),
                  folds: int | None = None, job_type: JobType = "search", wandb_id: str | None = None,
                  wandb_config: dict[str, Any] | None = None, epoch_objective: bool = False,
                  provenance: dict[str, Any] | None = None, clock: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one trial: config from the spec, `run_trial`, W&B tracking, optional per-epoch `report`.

    Shared by Ray trials, final re-runs and ``harness trial`` (W&B agent), so the three cannot drift.
    ``epoch_hooks`` run after every epoch before anything is logged or reported; callers (and tests,
    e.g. fault injection) add behaviour there instead of through environment variables.
    ``folds`` (default: the spec's ``selection.folds``; final runs pass 1) K > 1 runs the config on every
    cross-validation fold in ``run_dir/fold<k>`` and reports the mean over folds (see
    :mod:`harness.tune.folds`); only fold 0 reports per epoch, so the scheduler compares the same fold
    of every trial and a trial's report count does not grow with K.
    W&B: ``job_type`` and ``wandb_id`` (a stable id: a retry continues the run), ``wandb_config`` added to
    the run's config, ``epoch_objective`` logs the stage-aligned proxy under the first objective every
    epoch (for W&B's hyperband); what was logged is also in ``run_dir/wandb.json``. ``provenance`` goes
    into the run's ``manifest.json`` (e.g. the study and the command that launched it).
    ``clock`` receives wall-clock times (``time.time()``) of the trial's steps: ``imported`` (the training
    stack), ``tracker_ready`` (W&B run started), ``run_started``/``run_ended`` (inside ``run_trial``, all
    folds), ``tracked`` (W&B run finished), and ``lock_wait_s`` (seconds waited for stage locks while
    other trials trained those stages); see :func:`ray_trainable`.
    """
    from harness.engine.store import LOCK_WAIT
    from harness.pipelines.run import run_trial
    from harness.tune.folds import fold_runs, report_fields, summarise_folds, write_folds
    from harness.tune.tracking import RECORD, TrialTracker

    clock = {} if clock is None else clock
    clock["imported"] = time.time()

    params = dict(overrides)
    if threads:
        params["runtime.threads"] = threads
    config = spec.run_config(pipeline, params, data_dir)
    objectives = [o.metric for o in spec.objectives]
    tracker = TrialTracker(enabled=spec.wandb.enabled, project=spec.wandb.project, entity=spec.wandb.entity,
                           group=spec.name, name=tracker_name or run_dir.name,
                           config={"pipeline": pipeline, **overrides, **(wandb_config or {})},
                           directory=tracker_dir or run_dir, mode=spec.wandb.mode, run_id=wandb_id, job_type=job_type,
                           tags=[f"study:{spec.name}", f"pipeline:{pipeline}"],
                           objectives=[(o.metric, o.mode) for o in spec.objectives],
                           epoch_objective=objectives[0] if epoch_objective else None, record=run_dir / RECORD)
    clock["tracker_ready"] = time.time()
    timeline = StageTimeline.of(spec, pipeline) if report is not None or epoch_objective else None

    def on_epoch(stage: str, record: dict[str, Any]) -> None:
        fields = timeline.report(stage, record) if timeline is not None else None
        tracker.log_epoch(stage, record, proxy=fields[PROXY] if fields else None,
                          position=fields.get(STAGE_TIME) if fields else None)
        if report is not None and fields is not None:
            report({**fields, **dict.fromkeys(objectives, float(record["val_metric"])), "final": 0})

    def log_fold(k: int) -> EpochCallback:
        return lambda stage, record: tracker.log_epoch(f"fold{k}/{stage}", record)

    runs = fold_runs(run_dir, spec.selection.folds if folds is None else folds)
    results = []
    clock["run_started"] = time.time()
    try:
        for k, (fold_dir, fold_params) in enumerate(runs):
            fold_config = spec.run_config(pipeline, {**params, **fold_params}, data_dir) if fold_params else config
            hooks = [*epoch_hooks, on_epoch if k == 0 else log_fold(k)]
            results.append(run_trial(fold_config, fold_dir, data_dir=data_dir, store_root=store, callbacks=hooks,
                                     subsets=subsets, progress=False, check_data=check_data, provenance=provenance))
    except BaseException:
        clock["run_ended"] = time.time()
        tracker.finish({}, failed=True)
        raise
    clock["run_ended"] = time.time()
    clock["lock_wait_s"] = sum(float(st.get(LOCK_WAIT, 0.0)) for r in results for st in r.stages.values())
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
    clock["tracked"] = time.time()
    return final


def ray_trainable(config: dict[str, Any], spec_json: str, study_dir: str, data_dir: str | None,
                  epoch_hooks: Sequence[EpochCallback] = (), run_uid: str = "") -> None:
    """Ray Tune function trainable (module level so that Ray can pickle it by reference) of every run of a
    study, as :class:`harness.tune.queue.StudyQueue` hands them out.

    A search trial's ``config`` holds the searcher's ``_pipeline``, ``_overrides`` and ``_trial`` (its
    Optuna study and trial number, which name the trial's directory ``trials/<pipeline>-<number>`` and
    its W&B run); it evaluates on val and reports every epoch. A final run's ``config["run"]`` names a
    pipeline, the best overrides and a seed; it evaluates on val and test and reports once.
    ``run_uid`` is the study instance's id (:func:`harness.tune.bookkeeping.study_uid`): W&B run ids
    derive from it, so a Ray retry or a resumed study continues the same W&B run.

    ``RUN_DIR/trial.json`` says where the run ran and, under ``clock``, when (``time.time()``): the
    worker process started (``process_started``), the trainable was entered (``entered``; ``warm``: an
    earlier run on this worker already imported the training stack), the steps of :func:`execute_trial`,
    ``ended`` (before the final report) and the ``outcome`` (completed; stopped, by the scheduler or the
    time budget; failed). ``bench/bench_study.py`` computes a study's packing from these files.
    """
    import sys

    from ray import tune

    from harness.tune.tracking import stable_run_id

    clock: dict[str, Any] = {"process_started": _process_started(), "entered": time.time(),
                             "warm": "harness.pipelines.run" in sys.modules}
    spec = StudySpec.model_validate_json(spec_json)
    paths = StudyPaths(Path(study_dir))
    trial_id = tune.get_context().get_trial_id()
    subsets: tuple[str, ...]
    job_type: JobType
    where: dict[str, Any] = {"ray_trial_id": trial_id}
    if "run" in config:  # a final run: trained on the study split's train part, whatever selection.folds is
        run = config["run"]
        pipeline, overrides = run["pipeline"], {**run["overrides"], "runtime.seed": run["seed"]}
        run_dir = paths.final / run["dir"] if run.get("dir") else paths.final_run(pipeline, run["seed"])
        subsets, report, folds, job_type = ("val", "test"), None, 1, "final"
        key: tuple[Any, ...] = ("final", run_dir.name)
    else:
        pipeline, overrides, trial = config["_pipeline"], config["_overrides"], config.get("_trial")
        run_dir = paths.trial_run(pipeline, trial["number"]) if trial else paths.trials / trial_id
        subsets, report, folds, job_type = ("val",), tune.report, spec.selection.folds, "search"
        if trial:
            where.update(optuna_study=trial["study"], optuna_trial=trial["number"])
        key = (trial["study"], trial.get("continues", trial["number"])) if trial else (trial_id,)
    try:
        required = tune.get_context().get_trial_resources().required_resources
    except Exception:  # noqa: BLE001 - not inside a Tune session with resources
        required = {}
    cpus = max(1, int(required.get("CPU", 1)))
    info = _write_trial_info(run_dir, where, required, clock)
    clock["outcome"] = "failed"
    try:
        result = execute_trial(spec, pipeline, overrides, run_dir, store=paths.store,
                               data_dir=Path(data_dir) if data_dir else None, subsets=subsets, report=report,
                               tracker_dir=paths.wandb, tracker_name=run_dir.name, threads=cpus,
                               check_data=False,  # the driver checked the dataset once before the trials
                               epoch_hooks=epoch_hooks, folds=folds, job_type=job_type,
                               wandb_id=stable_run_id(run_uid, *key) if run_uid else None, wandb_config=where,
                               provenance=_provenance(paths, job_type, where), clock=clock)
        clock["outcome"] = "completed"
    except SystemExit:  # Tune ends a stopped trial's thread with SystemExit at its next report
        clock["outcome"] = "stopped"
        raise
    finally:
        clock["ended"] = time.time()
        _write_json(run_dir / "trial.json", {**info, "clock": clock})
    tune.report(result)


def _process_started() -> float | None:
    """When this worker process started (``time.time()``), or None."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - a timing detail, never a reason to fail a trial
        return None


def _provenance(paths: StudyPaths, mode: str, where: dict[str, Any]) -> dict[str, Any]:
    """What a study run's manifest adds to its own: the study, its manifest and the driver's command."""
    out: dict[str, Any] = {"study_dir": str(paths.root.resolve()), "mode": mode, **where}
    with contextlib.suppress(OSError, ValueError):
        out["command"] = json.loads(paths.manifest.read_text()).get("command")
    return out


def _write_trial_info(run_dir: Path, where: dict[str, Any], resources: dict[str, Any],
                      clock: dict[str, Any]) -> dict[str, Any]:
    """Where a trial ran: its Ray trial id and Optuna trial, node, process, resources and GPU; returns it."""
    import socket

    import ray

    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"trial_id": where["ray_trial_id"], **where, "node_id": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(), "pid": os.getpid(), "resources": resources,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "started": clock["entered"]}
    _write_json(run_dir / "trial.json", {**info, "clock": clock})
    return info


def _write_json(path: Path, body: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file); harness.data.io would import pandas here for this alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=2, default=str))
    tmp.replace(path)
