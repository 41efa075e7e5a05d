"""The one Ray Tune ``Tuner`` builder of a study, and the Ray session it runs in.

As Ray splits its user-facing ``Tuner`` (``tune/tuner.py``) from the internals that assemble trainable,
configs and callbacks (``tune/impl/tuner_internal.py``), the runner here decides *what* to run and
this module decides *how*: the search and the final re-runs go through :func:`build_tuner`, so they
share the trainable, resources, failure policy, storage layout and progress reporting, and differ only
in what Tune is asked to sample (searcher + scheduler, or a grid of final runs).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna

from harness.errors import ConfigError
from harness.tune.bookkeeping import trial_budgets
from harness.tune.paths import StudyPaths
from harness.tune.study import StudySpec
from harness.tune.timeline import stage_plan
from harness.tune.trainable import ray_trainable

if TYPE_CHECKING:
    from ray import tune

    from harness.engine.fit import EpochCallback

logger = logging.getLogger(__name__)

Mode = Literal["search", "final"]
LABELS: dict[Mode, str] = {"search": "trial", "final": "final run"}
"""How the progress messages name the trials of each mode."""


ADDRESS_ENV = "RAY_ADDRESS"
"""Set by ``ray job submit`` (and by users) for the driver: the cluster to join."""


def ray_init_kwargs(address: str | None, *, dashboard: bool = False, env: Mapping[str, str] | None = None,
                    ray_init: dict[str, Any] | None = None) -> dict[str, Any]:
    """``ray.init`` arguments: join ``address`` (``--address``), else ``$RAY_ADDRESS`` (what ``ray job
    submit`` sets), else start a new local Ray; ``dashboard`` starts Ray's dashboard with a local Ray
    (a joined cluster has its own). ``ray_init`` overrides our defaults (tests: ``num_cpus``)."""
    env = os.environ if env is None else env
    target = address or env.get(ADDRESS_ENV) or None
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": logger.isEnabledFor(logging.DEBUG)}
    if target is None:
        # a *new* local instance: plain ray.init() would attach to the last cluster started on this machine
        # (/tmp/ray/ray_current_cluster), even a dead one or somebody else's
        kwargs.update(address="local", include_dashboard=dashboard)
    else:
        kwargs["address"] = target
    kwargs.update(ray_init or {})
    return kwargs


def init_ray(address: str | None, ray_init: dict[str, Any] | None, *, dashboard: bool = False) -> None:
    """Start (or join, see :func:`ray_init_kwargs`) Ray quietly, unless the caller already did."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then really is quiet; progress is ours
    kwargs = ray_init_kwargs(address, dashboard=dashboard, ray_init=ray_init)
    try:
        context = ray.init(**kwargs)
    except Exception as e:
        if dashboard and "dashboard" in str(e).lower():
            raise ConfigError(f"--dashboard: Ray could not start its dashboard ({str(e).splitlines()[0]}); it needs "
                              "Ray's dashboard packages: pip install 'harness[dashboard]' (ray[default]).") from None
        raise
    where = "local Ray" if kwargs["address"] == "local" else f"Ray cluster at {kwargs['address']}"
    resources = ray.cluster_resources()
    logger.info("%s: %g CPUs, %g GPUs, %d node(s)", where, resources.get("CPU", 0), resources.get("GPU", 0),
                len([n for n in ray.nodes() if n.get("Alive")]))
    url = getattr(context, "dashboard_url", None)
    if url and (dashboard or kwargs["address"] != "local"):
        logger.info("Ray dashboard: http://%s", url)


def cuda_available() -> bool:
    """Whether the Ray cluster (not this process) has GPUs; decides ``gpu: auto`` per trial."""
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def build_tuner(spec: StudySpec, paths: StudyPaths, *, mode: Mode, data_dir: Path | None, cuda: bool, total: int,
                tune_config: dict[str, Any] | None = None, param_space: dict[str, Any] | None = None,
                epoch_hooks: Sequence[EpochCallback] = (),
                trainable: Callable[..., None] = ray_trainable, run_uid: str = "") -> tune.Tuner:
    """A Tuner running :func:`ray_trainable` in ``mode`` with the study's resources and failure policy.

    ``tune_config`` adds to the shared :class:`ray.tune.TuneConfig` fields (searcher, scheduler,
    sample count); ``epoch_hooks`` reach every trial through ``tune.with_parameters`` (so they must
    be picklable); ``total`` is the number of trials for the progress messages; ``trainable`` is
    :func:`ray_trainable` except in tests; ``run_uid`` the study instance's id (stable W&B run ids).
    """
    from ray import tune

    from harness.tune.callbacks import ProgressCallback

    wrapped = tune.with_resources(
        tune.with_parameters(trainable, spec_json=spec.model_dump_json(), study_dir=str(paths.root.resolve()),
                             data_dir=str(data_dir) if data_dir else None, mode=mode, epoch_hooks=tuple(epoch_hooks),
                             run_uid=run_uid),
        spec.resources.per_trial(cuda))
    return tune.Tuner(
        wrapped, param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent, reuse_actors=True,
                                    **(tune_config or {})),
        run_config=tune.RunConfig(name=f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(paths.ray.resolve()),
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures), verbose=0,
                                  callbacks=[ProgressCallback(total, LABELS[mode])]))


def search_tuner(spec: StudySpec, paths: StudyPaths, *, storage: optuna.storages.BaseStorage, done: dict[str, int],
                 data_dir: Path | None, cuda: bool, epoch_hooks: Sequence[EpochCallback] = (),
                 trainable: Callable[..., None] = ray_trainable, run_uid: str = "") -> tune.Tuner:
    """The search: each pipeline's remaining trials (its budget minus ``done``) sampled by its own Optuna
    study (into ``storage``), handed out in turn, stopped early by stage-aligned ASHA.

    ``trainable`` replaces :func:`ray_trainable` in tests (same signature; importable by Ray workers).
    """
    budget = spec.time_budget_minutes * 60 if spec.time_budget_minutes else None
    remaining = sum(max(0, n - done.get(p, 0)) for p, n in trial_budgets(spec).items())
    return build_tuner(spec, paths, mode="search", data_dir=data_dir, cuda=cuda, total=remaining,
                       tune_config={"search_alg": make_searcher(spec, storage, done), "scheduler": make_scheduler(spec),
                                    "num_samples": remaining, "time_budget_s": budget},
                       epoch_hooks=epoch_hooks, trainable=trainable, run_uid=run_uid)


def final_tuner(spec: StudySpec, paths: StudyPaths, runs: list[dict[str, Any]], *, data_dir: Path | None, cuda: bool,
                epoch_hooks: Sequence[EpochCallback] = (), run_uid: str = "") -> tune.Tuner:
    """The final re-runs: one trial per ``{"pipeline", "overrides", "seed"}`` in ``runs``, no search."""
    from ray import tune

    return build_tuner(spec, paths, mode="final", data_dir=data_dir, cuda=cuda, total=len(runs),
                       param_space={"run": tune.grid_search(runs)}, epoch_hooks=epoch_hooks, run_uid=run_uid)


def make_searcher(spec: StudySpec, storage: optuna.storages.BaseStorage,
                  done: dict[str, int] | None = None) -> tune.search.Searcher:
    """One Optuna searcher per pipeline (study ``<study>:<pipeline>`` in ``storage``; the spec's sampler,
    objectives and space), fed in turn so that each pipeline gets its trial budget (or, with a time
    budget, an equal share of trial-seconds, counting the trials of earlier runs)."""
    from harness.tune.bookkeeping import load_studies, pipeline_study_name, seconds_spent
    from harness.tune.searcher import HarnessSearch, PerPipelineSearch, SpaceFunction

    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    metric, mode = (metrics, modes) if len(metrics) > 1 else (metrics[0], modes[0])
    searchers = {}
    for k, p in enumerate(spec.pipelines):
        seed = spec.seed + k  # pipelines must not draw the same random sequence
        sampler = (optuna.samplers.TPESampler(seed=seed, multivariate=True) if spec.sampler == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))
        searchers[p] = HarnessSearch(space=SpaceFunction(spec.search_space, [p]), metric=metric, mode=mode,
                                     sampler=sampler, study_name=pipeline_study_name(spec.name, p), storage=storage,
                                     objective_metrics=metrics)
    by_time = spec.time_budget_minutes is not None
    spent = {p: seconds_spent(s) for p, s in load_studies(spec, storage).items()} if by_time else None
    return PerPipelineSearch(searchers, targets=trial_budgets(spec), done=done, spent=spent, by_time=by_time,
                             metric=metric, mode=mode)


def make_scheduler(spec: StudySpec) -> tune.schedulers.TrialScheduler:
    """ASHA per (pipeline, stage) on the stage-aligned time axis in the first objective's mode, or FIFO
    (also for multi-objective studies, which Tune's schedulers cannot rank)."""
    from ray.tune.schedulers import FIFOScheduler

    from harness.tune.scheduler import StageAlignedASHA

    if spec.scheduler.type != "asha" or spec.multi_objective:
        return FIFOScheduler()
    return StageAlignedASHA({p: stage_plan(spec, p) for p in spec.pipelines}, mode=spec.objectives[0].mode,
                            grace_period=spec.scheduler.grace_period,
                            reduction_factor=spec.scheduler.reduction_factor)
