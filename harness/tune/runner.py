"""A study from start to end: prepare the data, search (or resume) with Ray Tune + Optuna, and re-run
each pipeline's best configuration with the study's seeds, evaluated on the held-out test subset.

This is the public entry (:func:`run_study`, used by ``harness study run/resume``); it decides *what*
runs. The search and the final runs are one Tune experiment on the same workers: a pipeline's final
runs start as soon as its own search is over, while other pipelines may still search (see
:mod:`harness.tune.queue`, which decides the order). The pieces live in modules of one concern each,
as Ray Tune splits its own: ``paths`` (study directory layout), ``bookkeeping`` (the Optuna record:
create, reconcile, count, rank), ``tuner`` (the one Tuner builder and the Ray session), ``queue``
(what runs next), ``stagekeys`` (which stages a run would train), ``trainable`` (one trial, in a Ray
worker or inline), ``callbacks`` (progress), ``searcher`` and ``scheduler`` (Tune plug-ins).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from harness.errors import ConfigError
from harness.manifest import write_study_manifest
from harness.tune.bookkeeping import (
    best_trials,
    count_finished,
    is_legacy,
    load_studies,
    open_storage,
    reconcile,
    study_uid,
    trial_budgets,
)
from harness.tune.paths import StudyPaths
from harness.tune.storage import redact_url
from harness.tune.study import StudySpec

if TYPE_CHECKING:
    from harness.engine.fit import EpochCallback

logger = logging.getLogger(__name__)


def run_study(spec: StudySpec, study_dir: Path, *, data_dir: Path | None = None, address: str | None = None,
              resume: bool = False, storage_url: str | None = None, final: bool | None = None,
              ray_init: dict[str, Any] | None = None, epoch_hooks: Sequence[EpochCallback] = (),
              dashboard: bool = False, command: list[str] | None = None) -> dict[str, Any]:
    """Search (or resume), and the final seeded runs of the best config of each pipeline, each pipeline's
    as soon as its search is over (``final``: whether to run them; default the spec's ``final.enabled``).

    Each pipeline is searched in its own Optuna study ``<study>:<pipeline>`` with its own trial budget
    (:func:`~harness.tune.bookkeeping.trial_budgets`); a resume tops every pipeline up to its budget.
    When the Tune experiment started and ended is appended to ``STUDY_DIR/timings.json``.

    ``address`` (else ``$RAY_ADDRESS``) joins a Ray cluster, otherwise a local Ray starts (with its
    dashboard when ``dashboard``); see :func:`~harness.tune.tuner.ray_init_kwargs`.
    ``command`` is the command line recorded in the study's ``manifest.json`` (default: this process's).
    ``epoch_hooks`` run in every trial after each epoch (picklable callables, e.g. the fault
    injection of :mod:`harness.tune.testing`). Returns a summary dict: study name, storage,
    finished trials (in all and per pipeline), seconds, best trial per pipeline, final run dirs.
    """
    import ray

    from harness.tune.tuner import cuda_available, init_ray, study_tuner

    paths = StudyPaths(Path(study_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    url = storage_url or paths.storage_url
    shown = redact_url(url)
    with quiet_optuna():
        storage = open_storage(url, None if storage_url else str(paths.db))
        if is_legacy(spec, storage):
            raise ConfigError(f"{paths.root}: study {spec.name} in {shown} was written by an older harness (one "
                              f"Optuna study for all pipelines); `harness study status` and `harness report` still "
                              f"read it, but it cannot be resumed: start it again with another --out.")
        existing = load_studies(spec, storage)
        if existing and not resume:
            n = sum(len(s.trials) for s in existing.values())
            raise ConfigError(f"{paths.root}: study {spec.name} already has {n} trials in {shown}; "
                              f"pass --resume to continue it, or choose another --out.")
        data_root = prepare_data(spec, data_dir)
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dir": data_root})})
        paths.spec.write_text(yaml.safe_dump(json.loads(spec.model_dump_json()), sort_keys=False))  # resume: no --data
        done, requeued = reconcile(spec, storage)
        if requeued:
            logger.info("resuming: %d finished trials kept, %d interrupted trial(s) queued again", sum(done.values()),
                        requeued)
        budgets = trial_budgets(spec)
        remaining = {p: max(0, budgets[p] - done[p]) for p in spec.pipelines}
        uid = study_uid(spec, storage)
        if spec.wandb.enabled:
            from harness.tune.tracking import wandb_mode

            mode = wandb_mode(spec.wandb.mode) or f"WANDB_MODE={os.environ.get('WANDB_MODE')}"
            logger.info("W&B: %s runs in project %s", mode, spec.wandb.project)
        started_ray = not ray.is_initialized()
        init_ray(address, ray_init, dashboard=dashboard)
        write_study_manifest(paths, spec, storage_url=url, command=command)
        cuda = cuda_available()
        check_resources(spec, cuda)
        t0 = time.perf_counter()
        errors: dict[str, str] = {}
        with_finals = spec.final.enabled if final is None else final
        try:
            with interrupt_raises():
                if sum(remaining.values()) > 0 or with_finals:
                    logger.info("study %s: %s trial(s) to run (%s sampler, %s scheduler, %s per trial)%s", spec.name,
                                ", ".join(f"{p} {n}" for p, n in remaining.items()), spec.sampler,
                                spec.scheduler.type, spec.resources.per_trial(cuda),
                                ", then each pipeline's final runs" if with_finals else "")
                    slots = concurrent_slots(spec, cuda)
                    tuner = study_tuner(spec, paths, storage=storage, done=done, data_dir=data_root, cuda=cuda,
                                        finals=StudyFinals(spec, storage, paths.final) if with_finals else None,
                                        slots=slots, epoch_hooks=epoch_hooks, run_uid=uid)
                    started = time.time()
                    grid = tuner.fit()
                    record_session(paths, started=started, ended=time.time(), slots=slots)
                    errors = trial_errors(grid)
                studies = load_studies(spec, storage)
                best = best_trials(studies.values(), spec)
                runs = final_runs(spec, best, paths.final) if with_finals else []
        except KeyboardInterrupt:
            stop_interrupted(spec, storage, started_ray)
            raise
        finished = {p: count_finished(s) for p, s in studies.items()}
        return {"study": spec.name, "storage": shown, "finished": sum(finished.values()),
                "finished_per_pipeline": finished, "seconds": time.perf_counter() - t0,
                "best": {p: {"number": t.number, "values": t.values, "overrides": t.user_attrs.get("overrides"),
                             "trial_dir": str(paths.trial_of(t.user_attrs) or "")} for p, t in best.items()},
                "states": {p: state_counts(s) for p, s in studies.items()}, "errors": errors,
                "final": [str(paths.final / r["dir"] if r.get("dir") else paths.final_run(r["pipeline"], r["seed"]))
                          for r in runs]}


def publish_study_report(study_dir: Path, report_dir: Path) -> str | None:
    """Log the study's report and Table 9 to W&B as an artifact (job type ``report``, the study's group)
    when its W&B runs are online; returns the artifact name, or None."""
    from harness.tune.status import load_spec
    from harness.tune.tracking import is_online, publish_report, stable_run_id

    spec = load_spec(study_dir)
    if not spec.wandb.enabled or not is_online(spec.wandb.mode):
        return None
    paths = StudyPaths(Path(study_dir))
    uid = str(paths.root.resolve())
    if paths.db.exists():
        with quiet_optuna():
            uid = study_uid(spec, open_storage(paths.storage_url))
    return publish_report(project=spec.wandb.project, entity=spec.wandb.entity, group=spec.name,
                          mode=spec.wandb.mode, run_id=stable_run_id(uid, "report"), report_dir=report_dir,
                          directory=paths.wandb)


@contextlib.contextmanager
def interrupt_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in the driver. Ray Tune's own SIGINT handler would end the search
    quietly and return as if it had finished, and the study would go on to its final runs with the
    trials it has; the Optuna database, not Ray's experiment state, is what a resume continues."""
    key = "TUNE_DISABLE_SIGINT_HANDLER"
    previous = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def stop_interrupted(spec: StudySpec, storage: optuna.storages.BaseStorage, started_ray: bool) -> None:
    """After Ctrl-C: stop the trials (Ray shut down, when the study started it) and record their Optuna
    trials as interrupted and queued again, so that ``harness study resume`` runs them once more."""
    import ray

    logger.warning("interrupted: stopping the running trials ...")
    if started_ray:
        ray.shutdown()
    try:
        reconcile(spec, storage)
    except Exception as e:  # noqa: BLE001 - a resume reconciles again; the interrupt must still reach the user
        logger.warning("could not mark the interrupted trials yet (%s); `harness study resume` will", e)


def check_resources(spec: StudySpec, cuda: bool) -> None:
    """Refuse a study whose per-trial resources no live node of the Ray cluster has (Ray would wait forever)."""
    import ray

    need = spec.resources.per_trial(cuda)
    nodes: list[dict[str, float]] = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("CPU", 0) >= need["cpu"] and n.get("GPU", 0) >= need["gpu"] for n in nodes):
        return
    largest: dict[str, float] = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    raise ConfigError(f"resources: each trial needs {need['cpu']:g} CPU and {need['gpu']:g} GPU, but no node of the "
                      f"Ray cluster has that (the largest has {largest.get('CPU', 0):g} CPU, "
                      f"{largest.get('GPU', 0):g} GPU); lower resources.cpu/gpu in the study or add a node.")


def concurrent_slots(spec: StudySpec, cuda: bool) -> int:
    """How many trials the Ray cluster runs at once: per live node, how many times the per-trial resources
    fit in it (CPU and GPU), summed, capped by ``max_concurrent``."""
    import ray

    need = spec.resources.per_trial(cuda)
    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = [int(have.get(k.upper(), 0) // v) for k, v in need.items() if v > 0]
        total += min(fits) if fits else 0
    return min(total, spec.max_concurrent) if spec.max_concurrent else total


def record_session(paths: StudyPaths, *, started: float, ended: float, slots: int) -> None:
    """Append this run of the study's Tune experiment to ``STUDY_DIR/timings.json`` (a resume adds one):
    its wall-clock start and end and the number of trials it could run at once. With the trials'
    ``trial.json`` clocks, what ``bench/bench_study.py`` computes the workers' packing from."""
    try:
        sessions = json.loads(paths.timings.read_text()).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        sessions = []
    sessions.append({"started": started, "ended": ended, "slots": slots})
    paths.timings.write_text(json.dumps({"sessions": sessions}, indent=2))


class StudyFinals:
    """The study queue's final runs of a pipeline (:func:`final_runs`), asked when its search is over: its
    best trial's overrides with every final seed, read from ``storage`` then; or (``levels``) its runs of
    the ablation plan, which is written to ``final_dir/plan.json``."""

    def __init__(self, spec: StudySpec, storage: optuna.storages.BaseStorage, final_dir: Path) -> None:
        self.spec, self.storage, self.final_dir = spec, storage, final_dir

    def __call__(self, pipeline: str) -> list[dict[str, Any]]:
        if self.spec.final.mode == "levels":
            return [r for r in final_runs(self.spec, {}, self.final_dir) if r["pipeline"] == pipeline]
        best = best_trials(load_studies(self.spec, self.storage).values(), self.spec)
        return final_runs(self.spec, {pipeline: best[pipeline]}) if pipeline in best else []


def trial_errors(grid: Any) -> dict[str, str]:
    """Pipeline -> the last line of the first error of its failed search trials (what ``study run`` reports
    when a pipeline has no complete trial)."""
    out: dict[str, str] = {}
    for result in grid:
        if result.error is None or "run" in (result.config or {}):
            continue
        pipeline = str((result.config or {}).get("_pipeline", "?"))
        lines = [line.strip() for line in str(result.error).splitlines() if line.strip()]
        out.setdefault(pipeline, lines[-1] if lines else type(result.error).__name__)
    return out


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials of one Optuna study by state name (COMPLETE, PRUNED, FAIL, ...)."""
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def final_runs(spec: StudySpec, best: dict[str, FrozenTrial], final_dir: Path | None = None) -> list[dict[str, Any]]:
    """``final.mode: best``: one run per (pipeline, seed), each pipeline's best overrides with every
    final seed. ``levels``: the ablation plan (every level of every axis at the reference config),
    also written to ``final_dir/plan.json`` for the report."""
    if spec.final.mode == "levels":
        from harness.tune.levels import plan, write_plan

        planned = plan(spec)
        if final_dir is not None:
            write_plan(planned, final_dir, spec)
        return [{"pipeline": r.pipeline, "overrides": r.overrides, "seed": r.seed, "dir": r.dir_name}
                for r in planned]
    return [{"pipeline": p, "overrides": t.user_attrs.get("overrides", {}), "seed": s}
            for p, t in sorted(best.items()) for s in spec.final.seeds]


def prepare_data(spec: StudySpec, data_dir: Path | None) -> Path:
    """Check the data, create the study split (and its cross-validation folds) once, hash the image
    content and warm the array caches before trials start, so that concurrent trials neither race to
    write them nor each pay for the full dataset check.

    Returns the resolved dataset directory (recorded in the saved spec: a resume needs no --data).
    """
    from harness.data.cache import content_hash, load_cache
    from harness.data.folds import get_or_create_folds
    from harness.pipelines.context import load_dataset
    from harness.pipelines.registry import get_pipeline

    configs = {p: spec.run_config(p, {}, data_dir) for p in spec.pipelines}
    first = configs[spec.pipelines[0]]
    root, index, split = load_dataset(first, data_dir, check_data=True)
    if spec.selection.folds > 1:
        get_or_create_folds(index, split, spec.selection.folds)
    content_hash(index, first.data.cache_dir)
    sizes = {getattr(c, st.section).image_size for p, c in configs.items() for st in get_pipeline(p).stages}
    for size in sorted(sizes):
        load_cache(index, size, first.data.cache_dir)
    return root.resolve()


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every created study and told trial at INFO; a study's progress lines are ours.
    Scoped to the study, not set at import, so that importing the harness leaves Optuna's level alone."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def failed_pipelines(summary: dict, pipelines: list[str]) -> list[str]:
    """One line per pipeline without a complete trial: its trials by state and the first error seen."""
    lines = []
    for p in pipelines:
        if p in summary["best"]:
            continue
        states = (summary.get("states") or {}).get(p) or {}
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no trials"
        error = (summary.get("errors") or {}).get(p)
        why = f"; first error: {error}" if error else ""
        lines.append(f"pipeline {p}: no complete trial ({counts}){why}; see `harness study status` and the trials' "
                     "error.txt under STUDY_DIR/ray/.")
    return lines
