"""Ray Tune + Optuna study runner: search, resume, final seeded re-runs on the test subset.

Layout of a study directory::

    STUDY_DIR/study.yaml        resolved spec        STUDY_DIR/optuna.db     Optuna RDB storage
    STUDY_DIR/trials/<id>/      one run dir a trial  STUDY_DIR/stage_cache/  trained stages, shared
    STUDY_DIR/final/<p>-seed<k> best config re-runs  STUDY_DIR/ray/          Ray Tune experiment state
    STUDY_DIR/wandb/            W&B runs (offline by default)

Intermediate reports carry the current stage's validation metric as ``proxy`` (what ASHA compares);
only a trial's final report carries the objective. A trial stopped by the scheduler is stored in
Optuna as PRUNED, never as COMPLETE with a proxy value, so "best" is always a fully evaluated trial.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from harness.errors import ConfigError
from harness.tune.space import grid_points
from harness.tune.study import StudySpec

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PROXY = "proxy"
CRASH_ONCE_ENV = "HARNESS_TEST_CRASH_ONCE"
"""Test hook: path of a marker file; the first trial epoch that finds it missing writes it and kills
its worker process (a hard crash, as an OOM kill or a lost node would)."""


@dataclass(frozen=True)
class StudyPaths:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.db.resolve()}"

    trials = property(lambda self: self.root / "trials")
    final = property(lambda self: self.root / "final")
    store = property(lambda self: self.root / "stage_cache")
    ray = property(lambda self: self.root / "ray")
    wandb = property(lambda self: self.root / "wandb")
    spec = property(lambda self: self.root / "study.yaml")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


# --- the trial function (runs inside a Ray worker, or inline) --------------------------------------------

def execute_trial(spec: StudySpec, pipeline: str, overrides: dict[str, Any], run_dir: Path, *, store: Path,
                  data_dir: Path | None, subsets: tuple[str, ...], report: Any = None, tracker_dir: Path | None = None,
                  tracker_name: str | None = None, threads: int | None = None,
                  check_data: bool = True) -> dict[str, Any]:
    """Run one trial: config from the spec, `run_trial`, W&B tracking, optional per-epoch `report`.

    Shared by Ray trials, final re-runs and ``harness trial`` (W&B agent).
    """
    from harness.pipelines.run import run_trial
    from harness.tune.tracking import TrialTracker

    params = dict(overrides)
    if threads:
        params["runtime.threads"] = threads
    config = spec.run_config(pipeline, params, data_dir)
    tracker = TrialTracker(enabled=spec.wandb.enabled, project=spec.wandb.project, group=spec.name,
                           name=tracker_name or run_dir.name, config={"pipeline": pipeline, **overrides},
                           directory=tracker_dir or run_dir, mode=spec.wandb.mode)
    objectives = [o.metric for o in spec.objectives]

    crash_marker = os.environ.get(CRASH_ONCE_ENV)

    def on_epoch(stage: str, record: dict[str, Any]) -> None:
        if crash_marker and not Path(crash_marker).exists():  # fault injection for the retry test
            Path(crash_marker).write_text(f"{stage} epoch {record['epoch']}")
            os._exit(1)
        tracker.log_epoch(stage, record)
        if report is not None:
            value = float(record["val_metric"])
            report({PROXY: value, **dict.fromkeys(objectives, value), "final": 0, "stage": stage,
                    "epoch": record["epoch"]})

    try:
        result = run_trial(config, run_dir, data_dir=data_dir, store_root=store, callbacks=[on_epoch],
                           subsets=subsets, progress=False, check_data=check_data)
    except BaseException:
        tracker.finish({}, failed=True)
        raise
    final = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    if result.test_metrics:
        final.update({f"test/{k}": v for k, v in result.test_metrics.items() if isinstance(v, (int, float))})
    final.update({"final": 1, PROXY: result.metrics.get(objectives[0], math.nan), "seconds": result.seconds,
                  "trained_stages": len(result.trained_stages), "run_dir": str(run_dir)})
    tracker.finish(final)
    return final


def ray_trainable(config: dict[str, Any], spec_json: str, study_dir: str, data_dir: str | None, mode: str) -> None:
    """Ray Tune function trainable (module level so that Ray can pickle it by reference)."""
    from ray import tune

    spec = StudySpec.model_validate_json(spec_json)
    paths = StudyPaths(Path(study_dir))
    trial_id = tune.get_context().get_trial_id()
    if mode == "final":
        run = config["run"]
        pipeline, overrides = run["pipeline"], {**run["overrides"], "runtime.seed": run["seed"]}
        run_dir, subsets, name = paths.final / f"{pipeline}-seed{run['seed']}", ("val", "test"), None
    else:
        pipeline, overrides = config["_pipeline"], config["_overrides"]
        run_dir, subsets, name = paths.trials / trial_id, ("val",), trial_id
    try:
        required = tune.get_context().get_trial_resources().required_resources
    except Exception:  # noqa: BLE001 - not inside a Tune session with resources
        required = {}
    cpus = max(1, int(required.get("CPU", 1)))
    _write_trial_info(run_dir, trial_id, required)
    result = execute_trial(spec, pipeline, overrides, run_dir, store=paths.store, data_dir=Path(data_dir) if data_dir else None,
                           subsets=subsets, report=tune.report if mode != "final" else None, tracker_dir=paths.wandb,
                           tracker_name=name or run_dir.name, threads=cpus,
                           check_data=False)  # the driver checked the dataset once in prepare_data
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


# --- Optuna searcher ------------------------------------------------------------------------------------

def make_searcher(spec: StudySpec, storage: optuna.storages.BaseStorage):
    from harness.tune.searcher import HarnessSearch, SpaceFunction

    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    sampler = (optuna.samplers.TPESampler(seed=spec.seed, multivariate=True) if spec.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=spec.seed))
    return HarnessSearch(space=SpaceFunction(spec.search_space, list(spec.pipelines)),
                         metric=metrics if len(metrics) > 1 else metrics[0], mode=modes if len(modes) > 1 else modes[0],
                         sampler=sampler, study_name=spec.name, storage=storage, objective_metrics=metrics)


# --- study bookkeeping ---------------------------------------------------------------------------------

def _directions(spec: StudySpec) -> list[str]:
    return ["maximize" if o.mode == "max" else "minimize" for o in spec.objectives]


def reconcile(spec: StudySpec, storage: optuna.storages.BaseStorage) -> tuple[int, int]:
    """Prepare a study for (re)starting: create it, or after a killed driver mark its RUNNING trials
    FAIL (``interrupted``) and enqueue their parameters again so that they run once more.

    Returns (finished trials, trials re-queued).
    """
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if spec.name not in names:
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=_directions(spec))
        study.set_user_attr("spec", json.loads(spec.model_dump_json()))
        if spec.sampler == "grid":
            for pipeline, params in grid_points(spec.search_space, list(spec.pipelines)):
                study.enqueue_trial({"pipeline": pipeline, **params} if len(spec.pipelines) > 1 else params,
                                    skip_if_exists=True)
        elif len(spec.pipelines) > 1:  # the first trials cover every task order, the sampler does the rest
            for pipeline in spec.pipelines[: spec.n_trials]:
                study.enqueue_trial({"pipeline": pipeline})
        return 0, 0
    study = optuna.load_study(study_name=spec.name, storage=storage)
    requeued = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            requeued += 1
    return count_finished(study), requeued


def count_finished(study: optuna.Study) -> int:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in done or (t.state == optuna.trial.TrialState.FAIL and not t.user_attrs.get("interrupted")))


def best_trials(study: optuna.Study, spec: StudySpec) -> dict[str, optuna.trial.FrozenTrial]:
    """Best COMPLETE trial per pipeline on the first objective (selected on validation)."""
    sign = 1 if spec.objectives[0].mode == "max" else -1
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        p = t.user_attrs.get("pipeline")
        if p and (p not in best or sign * t.values[0] > sign * best[p].values[0]):
            best[p] = t
    return best


# --- running -------------------------------------------------------------------------------------------

def _init_ray(address: str | None, ray_init: dict[str, Any] | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then really is quiet; progress is ours
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": logger.isEnabledFor(logging.DEBUG)}
    # without --address a *new* local instance: plain ray.init() would attach to the last cluster started
    # on this machine (/tmp/ray/ray_current_cluster), even a dead one or somebody else's
    kwargs["address"] = address or "local"
    kwargs.update(ray_init or {})
    ray.init(**kwargs)


def _cuda_available() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def progress_callback(total: int, label: str):
    """A Tune callback: one log line per finished trial, plus a tqdm bar when on a terminal."""
    from ray import tune
    from tqdm.auto import tqdm

    class Progress(tune.Callback):
        def __init__(self) -> None:
            self.bar = tqdm(total=total, desc=label, disable=not os.isatty(2), leave=False)
            self.done = 0

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            r = trial.last_result or {}
            what = "stopped early" if not r.get("final") else ", ".join(
                f"{k}={r[k]:.3f}" for k in ("balanced_accuracy", "dice_mean") if isinstance(r.get(k), float))
            cfg = trial.config.get("_pipeline") or trial.config.get("run", {}).get("pipeline")
            logger.info("%s %d/%d done (pipeline %s): %s", label, self.done, total, cfg, what)
            self.bar.update(1)

        def on_trial_error(self, iteration, trials, trial, **info):
            logger.warning("%s: trial %s failed (see %s)", label, trial.trial_id, trial.local_path)

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return Progress()


def run_search(spec: StudySpec, paths: StudyPaths, *, data_dir: Path | None, storage: optuna.storages.BaseStorage,
               remaining: int, cuda: bool) -> None:
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from harness.tune.scheduler import PerPipelineASHA

    resources = spec.resources.per_trial(cuda)
    trainable = tune.with_resources(
        tune.with_parameters(ray_trainable, spec_json=spec.model_dump_json(), study_dir=str(paths.root.resolve()),
                             data_dir=str(data_dir) if data_dir else None, mode="search"), resources)
    max_t = sum(spec.run_config(p, {}).classifier.optim.epochs + spec.run_config(p, {}).segmenter.optim.epochs
                for p in spec.pipelines)
    scheduler = (PerPipelineASHA(metric=PROXY, mode="max", time_attr="training_iteration", max_t=max_t,
                               grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor)
                 if spec.scheduler.type == "asha" and not spec.multi_objective else FIFOScheduler())
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(spec, storage), scheduler=scheduler, num_samples=remaining,
                                    max_concurrent_trials=spec.max_concurrent, reuse_actors=True,
                                    time_budget_s=spec.time_budget_minutes * 60 if spec.time_budget_minutes else None),
        run_config=tune.RunConfig(name=f"search-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(paths.ray.resolve()),
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures), verbose=0,
                                  callbacks=[progress_callback(remaining, "trial")]),
    )
    tuner.fit()


def run_final(spec: StudySpec, paths: StudyPaths, best: dict[str, optuna.trial.FrozenTrial], *, data_dir: Path | None,
              cuda: bool) -> list[Path]:
    """Re-run each pipeline's best configuration with the study's seeds; evaluate val and test."""
    from ray import tune

    runs = [{"pipeline": p, "overrides": t.user_attrs.get("overrides", {}), "seed": s}
            for p, t in sorted(best.items()) for s in spec.final.seeds]
    if not runs:
        return []
    trainable = tune.with_resources(
        tune.with_parameters(ray_trainable, spec_json=spec.model_dump_json(), study_dir=str(paths.root.resolve()),
                             data_dir=str(data_dir) if data_dir else None, mode="final"),
        spec.resources.per_trial(cuda))
    tuner = tune.Tuner(trainable, param_space={"run": tune.grid_search(runs)},
                       tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent, reuse_actors=True),
                       run_config=tune.RunConfig(name=f"final-{time.strftime('%Y%m%d-%H%M%S')}",
                                                 storage_path=str(paths.ray.resolve()), verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                                 callbacks=[progress_callback(len(runs), "final run")]))
    tuner.fit()
    return [paths.final / f"{r['pipeline']}-seed{r['seed']}" for r in runs]


def prepare_data(spec: StudySpec, data_dir: Path | None) -> Path:
    """Check the data, create the study split once and warm the array caches before trials start."""
    from harness.data.cache import load_cache
    from harness.data.check import load_index
    from harness.data.splits import get_or_create_split
    from harness.pipelines.context import resolve_data_dir

    config = spec.run_config(spec.pipelines[0], {}, data_dir)
    root = resolve_data_dir(config, data_dir)
    index = load_index(root, config.data.columns or None, check=True)
    get_or_create_split(index, spec.data.split, spec.data.val_fraction, spec.data.test_fraction, spec.data.split_seed)
    sizes = {s for p in spec.pipelines for s in (spec.run_config(p, {}).classifier.image_size,
                                                 spec.run_config(p, {}).segmenter.image_size)}
    for size in sorted(sizes):
        load_cache(index, size, config.data.cache_dir)
    return root.resolve()


def run_study(spec: StudySpec, study_dir: Path, *, data_dir: Path | None = None, address: str | None = None,
              resume: bool = False, storage_url: str | None = None, final: bool | None = None,
              ray_init: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search (or resume), then the final seeded runs of the best config of each pipeline.

    Returns a summary dict: study name, storage, finished trials, best trials, final run dirs.
    """
    paths = StudyPaths(Path(study_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    url = storage_url or paths.storage_url
    storage = open_storage(url)
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if spec.name in names and not resume:
        study = optuna.load_study(study_name=spec.name, storage=storage)
        raise ConfigError(f"{paths.root}: study {spec.name} already has {len(study.trials)} trials in {url}; "
                          f"pass --resume to continue it, or choose another --out.")
    data_root = prepare_data(spec, data_dir)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dir": data_root})})
    paths.spec.write_text(yaml.safe_dump(json.loads(spec.model_dump_json()), sort_keys=False))  # resume needs no --data
    finished, requeued = reconcile(spec, storage)
    if requeued:
        logger.info("resuming: %d finished trials kept, %d interrupted trial(s) queued again", finished, requeued)
    remaining = spec.n_trials - finished
    _init_ray(address, ray_init)
    cuda = _cuda_available()
    t0 = time.perf_counter()
    if remaining > 0:
        logger.info("study %s: %d trial(s) to run (%s sampler, %s scheduler, %s per trial)", spec.name, remaining,
                    spec.sampler, spec.scheduler.type, spec.resources.per_trial(cuda))
        run_search(spec, paths, data_dir=data_root, storage=storage, remaining=remaining, cuda=cuda)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    best = best_trials(study, spec)
    final_dirs: list[Path] = []
    if (spec.final.enabled if final is None else final) and best:
        final_dirs = run_final(spec, paths, best, data_dir=data_root, cuda=cuda)
    return {"study": spec.name, "storage": url, "finished": count_finished(study), "seconds": time.perf_counter() - t0,
            "best": {p: {"number": t.number, "values": t.values, "overrides": t.user_attrs.get("overrides")}
                     for p, t in best.items()},
            "final": [str(d) for d in final_dirs]}
