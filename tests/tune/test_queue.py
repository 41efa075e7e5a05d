"""The study's queue without Ray: what it hands out next, as Tune would ask it (one run at a time)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from harness.tune.bookkeeping import load_studies, open_storage, reconcile
from harness.tune.queue import SearchDeadline, StudyQueue
from harness.tune.study import StudySpec
from harness.tune.tuner import make_searcher

SPACE = {"params": {"eval.mask_threshold": {"type": "float", "low": 0.3, "high": 0.7}}}


def spec_of(**fields) -> StudySpec:
    raw = {"name": "q", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "search_space": SPACE,
           "trials": 4, "sampler": "random", "scheduler": {"type": "fifo"}, "final": {"seeds": [42, 7]},
           "wandb": {"enabled": False}}
    if "trials_per_pipeline" in fields:
        raw.pop("trials")
    return StudySpec.model_validate({**raw, **fields})


class FakeKeys:
    """Stage keys by pipeline and seed: every trial of a pipeline trains the same stages (an evaluation-only
    space), as the stage store would say; ``store`` holds the keys trained so far."""

    def __init__(self, plans: dict[str, list[str]], seconds: dict[str, float]) -> None:
        self.plans, self._seconds, self.store = plans, seconds, set()

    def to_train(self, pipeline, overrides, folds=None):
        seed = overrides.get("runtime.seed", 42)
        return frozenset((s, f"{pipeline}-{s}-{seed}") for s in self.plans[pipeline]
                         if (s, f"{pipeline}-{s}-{seed}") not in self.store)

    def stored(self, stage, key):
        return (stage, key) in self.store

    def seconds(self):
        return dict(self._seconds)


def finals_of(spec):
    def finals(pipeline):
        return [{"pipeline": pipeline, "overrides": {}, "seed": s} for s in spec.final.seeds]
    return finals


def make_queue(tmp_path: Path, spec: StudySpec, keys=None, deadline=None, finals=True, slots=None):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    done, _ = reconcile(spec, storage)
    search = make_searcher(spec, storage, done)
    queue = StudyQueue(search, finals=finals_of(spec) if finals else None, keys=keys, deadline=deadline,
                       slots=slots, metric=search.metric, mode=search.mode)
    return queue, storage


def what(cfg) -> str:
    if not isinstance(cfg, dict):
        return str(cfg)
    return f"final {cfg['run']['pipeline']}{cfg['run']['seed']}" if "run" in cfg else f"search {cfg['_pipeline']}"


def complete(queue, trial_id, cfg, keys=None):
    """The run ends: what it trained is stored, its final result reported."""
    if keys is not None:
        pipeline = cfg["run"]["pipeline"] if "run" in cfg else cfg["_pipeline"]
        overrides = {"runtime.seed": cfg["run"]["seed"]} if "run" in cfg else {}
        keys.store |= keys.to_train(pipeline, overrides)
    queue.on_trial_complete(trial_id, {"balanced_accuracy": 0.5, "final": 1})


def test_a_trial_that_would_wait_for_a_stage_in_training_lets_another_pipeline_go_first(tmp_path):
    spec = spec_of(trials_per_pipeline={"a": 4, "b": 4})
    keys = FakeKeys({"a": ["clf", "seg"], "b": ["seg3", "roi"]}, {})
    queue, storage = make_queue(tmp_path, spec, keys, finals=False)
    t0, t1 = queue.suggest("t0"), queue.suggest("t1")
    assert (what(t0), what(t1)) == ("search a", "search b")
    complete(queue, "t1", t1, keys)  # b's stages are stored; a's are still in training (t0)
    t2 = queue.suggest("t2")
    assert what(t2) == "search b", "a is owed the next trial, but it would wait for t0's stages"
    assert what(queue.suggest("t3")) == "search b"
    complete(queue, "t0", t0, keys)
    assert what(queue.suggest("t4")) == "search a", "a's waiting trial goes once its stages are stored"
    a_trials = load_studies(spec, storage)["a"].trials
    assert [t.user_attrs["ray_trial_id"] for t in a_trials] == ["t0", "t4"], "asked as t2, it runs as t4"


def test_when_every_run_would_wait_one_goes_anyway(tmp_path):
    keys = FakeKeys({"a": ["clf"], "b": ["roi"]}, {})
    queue, _ = make_queue(tmp_path, spec_of(trials_per_pipeline={"a": 3, "b": 3}), keys, finals=False)
    assert [what(queue.suggest(f"t{k}")) for k in range(4)] == ["search a", "search b", "search a", "search b"], \
        "a worker is never left empty because of a conflict: the run waits for the lock instead"


def test_final_runs_start_when_their_pipelines_search_is_over_longest_first(tmp_path):
    spec = spec_of(trials_per_pipeline={"a": 1, "b": 2})
    keys = FakeKeys({"a": ["clf", "seg"], "b": []}, {"clf": 100.0, "seg": 50.0})
    queue, _ = make_queue(tmp_path, spec, keys)
    t0, t1 = queue.suggest("t0"), queue.suggest("t1")
    assert (what(t0), what(t1)) == ("search a", "search b")
    complete(queue, "t0", t0, keys)  # a's search is over (its only trial)
    t2 = queue.suggest("t2")
    assert what(t2) == "search b", "search trials go before final runs"
    assert what(queue.suggest("t3")) == "final a7", "the longest final run first: a7 trains 150 s"
    assert what(queue.suggest("t4")) == "final a42", "its stages are stored (the search's seed): 0 s"
    assert queue.suggest("t5") is None, "b is still searching: its final runs come later"
    complete(queue, "t1", t1, keys)
    complete(queue, "t2", t2, keys)
    assert queue.released == {"a", "b"}
    assert [what(queue.suggest(f"t{k}")) for k in (6, 7)] == ["final b42", "final b7"]
    assert queue.suggest("t8") == "FINISHED"


def test_time_budget_closes_the_search_not_the_final_runs(tmp_path):
    spec = spec_of(trials_per_pipeline={"a": 3, "b": 3})
    keys = FakeKeys({"a": ["clf"], "b": ["roi"]}, {})
    deadline = time.time() + 3600
    queue, storage = make_queue(tmp_path, spec, keys, deadline=deadline)
    t0, t1 = queue.suggest("t0"), queue.suggest("t1")
    t2 = queue.suggest("t2")  # both pipelines' next trials conflict: a's is handed out, b's waits (asked)
    assert [what(c) for c in (t0, t1, t2)] == ["search a", "search b", "search a"]
    queue._deadline = time.time() - 1  # the budget is spent
    assert queue.suggest("t3") is None, "no new search trial; finals wait for the running trials"
    b_trials = load_studies(spec, storage)["b"].trials
    assert [t.state for t in b_trials] == [TrialState.RUNNING, TrialState.PRUNED], "the waiting one never ran"
    for tid, cfg in (("t0", t0), ("t1", t1), ("t2", t2)):
        complete(queue, tid, cfg, keys)
    finals = [what(queue.suggest(f"f{k}")) for k in range(4)]
    assert sorted(finals) == ["final a42", "final a7", "final b42", "final b7"]
    assert queue.suggest("f4") == "FINISHED"


def test_with_slots_the_next_run_is_chosen_when_a_worker_frees(tmp_path):
    """Two slots: no third run is chosen (nor its Optuna trial asked) while two run; once one ends, the
    choice sees what was stored meanwhile."""
    keys = FakeKeys({"a": ["clf"], "b": ["roi"]}, {})
    queue, storage = make_queue(tmp_path, spec_of(trials_per_pipeline={"a": 3, "b": 1}), keys, finals=False, slots=2)
    t0, t1 = queue.suggest("t0"), queue.suggest("t1")
    assert queue.suggest("t2") is None and queue.suggest("t2") is None
    assert len(load_studies(spec_of(trials_per_pipeline={"a": 3, "b": 1}), storage)["a"].trials) == 1
    complete(queue, "t0", t0, keys)
    assert what(queue.suggest("t2")) == "search a", "a's stage is stored: its next trial runs as a cached one"
    complete(queue, "t1", t1, keys)
    assert what(queue.suggest("t3")) == "search a"
    assert queue.suggest("t4") is None, "both slots taken, one trial of a left"


def test_search_deadline_stops_search_trials_only():
    stop = SearchDeadline(time.time() - 1)
    assert stop("t", {"final": 0, "proxy": 0.5}) and not stop("t", {"final": 1})
    assert not stop("t", {"final": 0, "proxy": 0.5, "replayed": True}), "a cached trial finishes"
    assert not SearchDeadline(time.time() + 60)("t", {"final": 0}) and not stop.stop_all()


@pytest.mark.parametrize("pipeline", ["a", "b", "c"])
def test_dry_run_keys_are_the_keys_a_real_run_stores(pipeline, make_dataset, tmp_path):
    """The stage keys StageKeys computes in the driver are those run_trial stores (same _obtain code)."""
    from harness.pipelines.run import run_trial
    from harness.tune.stagekeys import StageKeys

    data = make_dataset(tmp_path / "ds", n=16, size=32, images_per_patient=2)
    tiny = {"classifier.image_size": 32, "segmenter.image_size": 32, "joint.image_size": 32,
            "classifier.optim.epochs": 1, "segmenter.optim.epochs": 1, "joint.optim.epochs": 1,
            "roi.lesion_min_pixels": 2}
    spec = spec_of(pipelines=[pipeline], base={pipeline: f"tiny-{pipeline}"},
                   overrides={k: v for k, v in tiny.items() if k.split(".")[0] in ("classifier", "segmenter", "roi")
                              or pipeline == "c" and k.startswith("joint")},
                   data={"split": "study", "val_fraction": 0.25, "test_fraction": 0.25})
    keys = StageKeys(spec, data, tmp_path / "store")
    before = keys.asked(pipeline, {})
    assert before and not any(stored for _, _, stored in before)
    run_trial(spec.run_config(pipeline, {}, data), tmp_path / "run", data_dir=data, store_root=tmp_path / "store",
              subsets=("val",), progress=False)
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "run" / "stages").glob("*.json")}
    assert [(s, k) for s, k, _ in before] == [(s, records[s]["hash"]) for s, _, _ in before]
    assert all(stored for _, _, stored in keys.asked(pipeline, {})) and not keys.to_train(pipeline, {})
    assert set(keys.seconds()) == set(records)


def test_slots_are_what_every_live_node_fits_and_sessions_are_appended(tmp_path, monkeypatch):
    import ray

    from harness.tune.paths import StudyPaths
    from harness.tune.runner import concurrent_slots, record_session

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 3.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    spec = spec_of(resources={"cpu": 1, "gpu": "auto"})
    assert concurrent_slots(spec, cuda=False) == 7, "CPU only: 4 + 3"
    assert concurrent_slots(spec, cuda=True) == 2, "0.5 GPU each: 2 on the first node, none on the second"
    assert concurrent_slots(spec_of(max_concurrent=3), cuda=False) == 3
    paths = StudyPaths(tmp_path)
    record_session(paths, started=1.0, ended=2.0, slots=2)
    record_session(paths, started=3.0, ended=5.0, slots=2)  # a resume
    assert [s["ended"] for s in json.loads(paths.timings.read_text())["sessions"]] == [2.0, 5.0]
