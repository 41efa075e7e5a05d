"""The study's queue: every run of a study, handed to Ray Tune as workers free up, so that none idles.

One Tune experiment runs the whole study, search and final runs, on the same workers (their imports
and W&B set-up are paid once, not again for the final runs):

- **search trials** come from :class:`~harness.tune.searcher.PerPipelineSearch` in its balance order
  (equal trial or time budgets per pipeline);
- a pipeline's **final runs** are released as soon as its own search is over (budget used, no trial of
  it left running), while other pipelines may still search; they go longest first (the estimate of
  :mod:`harness.tune.stagekeys`: stored stages cost nothing), so that short runs fill the end;
- a run that would **train a stage another running trial is training** (same stage key) would only
  wait for that trial's lock on a worker: it waits in the queue instead while another run goes first
  (a search trial asked from its Optuna study keeps its parameters; it goes when the stage is stored,
  then as a cheap cached trial, or when nothing else can run);
- the study's **time budget** closes the search (no new search trial; :class:`SearchDeadline` stops
  the running ones at their next epoch, which then count as PRUNED, as Tune's ``time_budget_s``
  did), not the final runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from harness.tune.searcher import PerPipelineSearch, PickledState
from harness.tune.stagekeys import StageKey, StageKeys, estimate_seconds
from harness.tune.timeline import REPLAYED

logger = logging.getLogger(__name__)

FinalRunsOf = Callable[[str], list[dict[str, Any]]]
"""pipeline -> its final runs (``{"pipeline", "overrides", "seed"[, "dir"]}``), asked once its search is over."""


@dataclass
class _Candidate:
    config: dict[str, Any]
    trains: frozenset[StageKey]
    pipeline: str | None = None  # a search trial's pipeline (None: a final run)
    asked_as: str | None = None  # a search trial's id in its searcher until it is handed out
    seconds: float = 0.0  # a final run's estimated training time


class StudyQueue(PickledState, Searcher):
    """Tune searcher of a whole study (module docstring). ``finals`` gives a pipeline's final runs (None:
    search only); ``keys`` the stages a run would train (None: no conflicts known, finals in order);
    ``deadline`` (``time.time()``) closes the search.

    ``slots`` (how many trials run at once) makes the choice late: nothing is handed out while every slot
    is taken, so Tune keeps no pending trial chosen a whole trial ahead; the next run is chosen when a
    worker frees (Tune asks again every controller step, ~0.1 s), with what is known then (stages stored
    meanwhile, results the sampler has seen). None: hand out whenever Tune asks.
    """

    def __init__(self, search: PerPipelineSearch, *, finals: FinalRunsOf | None = None, keys: StageKeys | None = None,
                 deadline: float | None = None, slots: int | None = None, metric: str | list[str],
                 mode: str | list[str]) -> None:
        super().__init__(metric=metric, mode=mode)  # type: ignore[arg-type]  # Ray's hints say str only
        self._search = search
        self._finals_of = finals
        self._keys = keys
        self._deadline = deadline
        self._slots = slots
        self._closed = False
        self._deferred: dict[str, _Candidate] = {}  # pipeline -> its search trial waiting in the queue
        self._finals: list[_Candidate] = []  # released final runs not handed out yet
        self._released: set[str] = set()
        self._active: dict[str, _Candidate] = {}  # Ray trial id -> what it runs
        self._asked = 0
        self._stage_seconds: dict[str, float] | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self._search.set_search_properties(metric, mode, config, **spec)

    @property
    def released(self) -> set[str]:
        """Pipelines whose search is over (their final runs, if any, are queued or done)."""
        return set(self._released)

    # -- what a run trains ------------------------------------------------------------------------
    def _trains(self, pipeline: str, overrides: dict[str, Any], folds: int | None = None) -> frozenset[StageKey]:
        return self._keys.to_train(pipeline, overrides, folds) if self._keys is not None else frozenset()

    def _unstored(self, keys: frozenset[StageKey]) -> set[StageKey]:
        return {k for k in keys if self._keys is not None and not self._keys.stored(*k)}

    def _conflicts(self, candidate: _Candidate) -> bool:
        """Whether the run would train a stage that a running trial is training (so it would wait)."""
        wanted = self._unstored(candidate.trains)
        return bool(wanted) and any(wanted & self._unstored(a.trains) for a in self._active.values())

    # -- the queue --------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]  # Ray's hint omits FINISHED
        self._close_if_late()
        self._release()
        if self._slots is not None and len(self._active) >= self._slots:
            return None if self._remaining() else Searcher.FINISHED
        first: _Candidate | None = None
        for candidate in self._candidates():
            if not self._conflicts(candidate):
                return self._hand_out(candidate, trial_id)
            first = first or candidate
        if first is not None:  # everything left would wait for a stage in training: a worker must not stay empty
            return self._hand_out(first, trial_id)
        return None if self._remaining() else Searcher.FINISHED

    def _remaining(self) -> bool:
        """Whether anything may still be handed out (a search trial, or final runs not released or queued)."""
        return not (self._closed_search() and not self._finals and self._released >= set(self._search.pipelines))

    def _candidates(self) -> Iterator[_Candidate]:
        """Runs in order of preference: search trials waiting in the queue, new search trials (balance
        order), then released final runs, longest first. New trials are asked only when reached."""
        if not self._closed:
            order = self._search.order()
            waiting = sorted(self._deferred, key=lambda p: order.index(p) if p in order else -1)
            yield from (self._deferred[p] for p in waiting)
            for pipeline in order:
                if pipeline in self._deferred:
                    continue
                asked_as = f"queued-{self._asked}"  # one Tune trial id may see several asks; it runs under its own
                self._asked += 1
                cfg = self._search.ask(pipeline, asked_as)
                if cfg is None:
                    continue
                candidate = _Candidate(cfg, self._trains(pipeline, cfg["_overrides"]), pipeline, asked_as)
                self._deferred[pipeline] = candidate  # until handed out
                yield candidate
        seconds = self._seconds()
        default = max(seconds.values(), default=60.0)
        for candidate in self._finals:
            candidate.seconds = estimate_seconds(frozenset(self._unstored(candidate.trains)), seconds, default=default)
        yield from sorted(self._finals, key=lambda c: -c.seconds)

    def _hand_out(self, candidate: _Candidate, trial_id: str) -> dict[str, Any]:
        if candidate.pipeline is not None:
            del self._deferred[candidate.pipeline]
            self._search.rename(str(candidate.asked_as), trial_id)
            self._search.begin(trial_id)
        else:
            self._finals.remove(candidate)
        self._active[trial_id] = candidate
        return candidate.config

    def _release(self) -> None:
        """Queue the final runs of every pipeline whose search is over."""
        for pipeline in self._search.pipelines:
            if pipeline in self._released or pipeline in self._deferred or self._search.searching(pipeline):
                continue
            self._released.add(pipeline)
            for run in self._finals_of(pipeline) if self._finals_of is not None else []:
                overrides = {**run["overrides"], "runtime.seed": run["seed"]}
                self._finals.append(_Candidate({"run": run}, self._trains(run["pipeline"], overrides, folds=1)))

    def _closed_search(self) -> bool:
        return not self._deferred and not any(self._search.searching(p) for p in self._search.pipelines)

    def _close_if_late(self) -> None:
        if self._closed or self._deadline is None or time.time() < self._deadline:
            return
        self._closed = True
        if self._closed_search():  # the search ended within its budget
            return
        for candidate in self._deferred.values():
            self._search.abandon(str(candidate.asked_as))
        self._deferred.clear()
        self._search.close()
        logger.info("time budget reached: no new search trials; running ones stop at their next trained epoch")

    def _seconds(self) -> dict[str, float]:
        if self._stage_seconds is None:
            self._stage_seconds = self._keys.seconds() if self._keys is not None else {}
        return self._stage_seconds

    # -- results ----------------------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        candidate = self._active.get(trial_id)
        if candidate is not None and candidate.pipeline is not None:
            self._search.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        candidate = self._active.pop(trial_id, None)
        self._stage_seconds = None  # it may have trained a stage
        if candidate is not None and candidate.pipeline is not None:
            self._search.on_trial_complete(trial_id, result, error)
            self._release()


class SearchDeadline(Stopper):
    """Stops search trials at their first epoch report after ``deadline`` (``time.time()``) that trained:
    an epoch replayed from the stage cache never stops a trial (finishing one whose stages are stored costs
    seconds), and final runs, which report once at their end, run to completion."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return result.get("final") == 0 and not result.get(REPLAYED) and time.time() >= self.deadline

    def stop_all(self) -> bool:
        return False
