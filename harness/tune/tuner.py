"""The one Ray Tune ``Tuner`` builder of a study, and the Ray session it runs in.

As Ray splits its user-facing ``Tuner`` (``tune/tuner.py``) from the internals that assemble trainable,
configs and callbacks (``tune/impl/tuner_internal.py``), the runner here decides *what* to run and
this module decides *how*: the search and the final re-runs are one Tune experiment
(:func:`study_tuner`), whose searcher is the study's queue (:mod:`harness.tune.queue`), so that they
share the trainable, its workers, resources, failure policy, storage layout and progress reporting.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from harness.tune.queue import FinalRunsOf
    from harness.tune.searcher import PerPipelineSearch

logger = logging.getLogger(__name__)

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


def build_tuner(spec: StudySpec, paths: StudyPaths, *, data_dir: Path | None, cuda: bool,
                totals: dict[str, int], tune_config: dict[str, Any] | None = None,
                param_space: dict[str, Any] | None = None, stop: Any = None, epoch_hooks: Sequence[EpochCallback] = (),
                trainable: Callable[..., None] = ray_trainable, run_uid: str = "",
                max_concurrent: int | None = None) -> tune.Tuner:
    """A Tuner running :func:`ray_trainable` with the study's resources and failure policy.

    ``tune_config`` adds to the shared :class:`ray.tune.TuneConfig` fields (searcher, scheduler,
    sample count); ``stop`` is the RunConfig's stopper; ``epoch_hooks`` reach every trial through
    ``tune.with_parameters`` (so they must be picklable); ``totals`` the number of search trials and
    final runs for the progress messages; ``trainable`` is :func:`ray_trainable` except in tests;
    ``run_uid`` the study instance's id (stable W&B run ids); ``max_concurrent`` caps the trials running at
    once (default the spec's ``max_concurrent``). Tune also lets that many trials wait for their workers at
    once: without a cap it starts a custom searcher's trials one at a time, each once the previous one's
    worker is up, so the second worker of a study would start seconds after the first.
    """
    from ray import tune

    from harness.tune.callbacks import ProgressCallback

    wrapped = tune.with_resources(
        tune.with_parameters(trainable, spec_json=spec.model_dump_json(), study_dir=str(paths.root.resolve()),
                             data_dir=str(data_dir) if data_dir else None, epoch_hooks=tuple(epoch_hooks),
                             run_uid=run_uid),
        spec.resources.per_trial(cuda))
    return tune.Tuner(
        wrapped, param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or spec.max_concurrent, reuse_actors=True,
                                    **(tune_config or {})),
        run_config=tune.RunConfig(name=f"study-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=str(paths.ray.resolve()), stop=stop,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures), verbose=0,
                                  callbacks=[ProgressCallback(totals)]))


def study_tuner(spec: StudySpec, paths: StudyPaths, *, storage: optuna.storages.BaseStorage, done: dict[str, int],
                data_dir: Path | None, cuda: bool, finals: FinalRunsOf | None = None, slots: int | None = None,
                epoch_hooks: Sequence[EpochCallback] = (), trainable: Callable[..., None] = ray_trainable,
                run_uid: str = "") -> tune.Tuner:
    """The whole study in one Tune experiment, handed out by :class:`~harness.tune.queue.StudyQueue`:
    each pipeline's remaining trials (its budget minus ``done``) sampled by its own Optuna study (into
    ``storage``) and stopped early by stage-aligned ASHA, then, as each pipeline's search ends, its final
    runs (``finals``: pipeline -> runs; None: search only). The study's time budget closes the search.

    Stage keys (which runs would train the same stage) are known when the dataset is (``data_dir``);
    ``slots``, the trials the cluster runs at once, lets the queue choose each run when a worker frees.
    ``trainable`` replaces :func:`ray_trainable` in tests (same signature; importable by Ray workers).
    """
    from harness.tune.queue import SearchDeadline, StudyQueue
    from harness.tune.stagekeys import StageKeys

    deadline = time.time() + spec.time_budget_minutes * 60 if spec.time_budget_minutes else None
    remaining = sum(max(0, n - done.get(p, 0)) for p, n in trial_budgets(spec).items())
    n_finals = max_final_runs(spec) if finals is not None else 0
    search = make_searcher(spec, storage, done)
    keys = StageKeys(spec, data_dir, paths.store) if data_dir is not None else None
    queue = StudyQueue(search, finals=finals, keys=keys, deadline=deadline, slots=slots, metric=search.metric,
                       mode=search.mode)
    return build_tuner(spec, paths, data_dir=data_dir, cuda=cuda, totals={"trial": remaining, "final run": n_finals},
                       tune_config={"search_alg": queue, "scheduler": make_scheduler(spec),
                                    "num_samples": max(1, remaining + n_finals)},
                       stop=SearchDeadline(deadline) if deadline is not None else None,
                       epoch_hooks=epoch_hooks, trainable=trainable, run_uid=run_uid, max_concurrent=slots)


def search_tuner(spec: StudySpec, paths: StudyPaths, *, storage: optuna.storages.BaseStorage, done: dict[str, int],
                 data_dir: Path | None, cuda: bool, epoch_hooks: Sequence[EpochCallback] = (),
                 trainable: Callable[..., None] = ray_trainable, run_uid: str = "") -> tune.Tuner:
    """The search alone (no final runs): :func:`study_tuner` with ``finals=None``."""
    return study_tuner(spec, paths, storage=storage, done=done, data_dir=data_dir, cuda=cuda, epoch_hooks=epoch_hooks,
                       trainable=trainable, run_uid=run_uid)


def max_final_runs(spec: StudySpec) -> int:
    """Final runs of the study when every pipeline has a best trial (an upper bound for Tune's sample count)."""
    if not spec.final.enabled:
        return 0
    if spec.final.mode == "levels":
        from harness.tune.levels import plan

        return len(plan(spec))
    return len(spec.pipelines) * len(spec.final.seeds)


def startup_trials(budget: int) -> int:
    """Random trials before TPE models the results: Optuna's default 10, but a third of a smaller budget (at
    least 2), so that a study of fewer than ~30 trials per pipeline is not random search under another name."""
    return min(10, max(2, budget // 3))


def make_searcher(spec: StudySpec, storage: optuna.storages.BaseStorage,
                  done: dict[str, int] | None = None) -> PerPipelineSearch:
    """One Optuna searcher per pipeline (study ``<study>:<pipeline>`` in ``storage``; the spec's sampler,
    objectives and space), fed in turn so that each pipeline gets its trial budget (or, with a time
    budget, an equal share of trial-seconds, counting the trials of earlier runs)."""
    from harness.tune.bookkeeping import load_studies, pipeline_study_name, seconds_spent
    from harness.tune.searcher import HarnessSearch, PerPipelineSearch, SpaceFunction

    metrics = [o.metric for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    metric, mode = (metrics, modes) if len(metrics) > 1 else (metrics[0], modes[0])
    searchers = {}
    budgets = trial_budgets(spec)
    for k, p in enumerate(spec.pipelines):
        seed = spec.seed + k  # pipelines must not draw the same random sequence
        sampler = (optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                              n_startup_trials=startup_trials(budgets[p]))
                   if spec.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))
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
