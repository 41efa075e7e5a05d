"""Equal budgets: each pipeline has its own Optuna study and gets its share of the trials, however much
better another pipeline scores early; a resume tops every pipeline up to its share."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from harness.tune.bookkeeping import best_trials, count_finished, load_studies, open_storage, reconcile
from harness.tune.paths import StudyPaths
from harness.tune.searcher import next_pipeline
from harness.tune.study import StudySpec
from harness.tune.testing import TOY_SCORES

SPACE = {"params": {"eval.mask_threshold": {"type": "float", "low": 0.3, "high": 0.7},
                    "roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "when": {"pipeline": ["b"]}}}}


def toy_spec(**fields) -> StudySpec:
    raw = {"name": "toy", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "search_space": SPACE,
           "trials": 12, "sampler": "tpe", "seed": 3, "resources": {"cpu": 0.5},
           "overrides": {"classifier.optim.epochs": 4, "segmenter.optim.epochs": 4},
           "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}, "wandb": {"enabled": False}}
    return StudySpec.model_validate({**raw, **fields})


def test_next_pipeline_fills_the_emptiest_budget_first():
    assert next_pipeline({"a": 3, "b": 3}, {"a": 0, "b": 0}) == "a", "ties go to the study's order"
    assert next_pipeline({"a": 3, "b": 3}, {"a": 1, "b": 0}) == "b"
    assert next_pipeline({"a": 2, "b": 6}, {"a": 1, "b": 2}) == "b", "share used: a 1/2, b 2/6"
    assert next_pipeline({"a": 3, "b": 3}, {"a": 3, "b": 2}) == "b"
    assert next_pipeline({"a": 3, "b": 3}, {"a": 3, "b": 3}) is None
    assert next_pipeline({"a": 3, "b": 3}, {"a": 2, "b": 0}, seconds={"a": 10.0, "b": 50.0}) == "a", "by time"
    assert next_pipeline({"a": 3, "b": 3}, {"a": 3, "b": 0}, seconds={"a": 10.0, "b": 50.0}) == "b", "a is done"


def drive(searcher, n: int, score) -> list[str]:
    """What Tune does with a searcher, one trial at a time: suggest, then complete with a final result."""
    order = []
    for k in range(n):
        cfg = searcher.suggest(f"t{k}")
        if cfg == "FINISHED":
            break
        order.append(cfg["_pipeline"])
        searcher.on_trial_result(f"t{k}", {"proxy": 0.5, "final": 0})
        searcher.on_trial_complete(f"t{k}", {"balanced_accuracy": score(cfg), "final": 1})
    return order


def test_a_dominating_pipeline_gets_no_more_trials(tmp_path):
    """Without Ray: the composite searcher alternates although TPE would chase pipeline a (0.84 vs 0.80)."""
    from harness.tune.tuner import make_searcher

    spec = toy_spec(trials=13)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    done, _ = reconcile(spec, storage)
    searcher = make_searcher(spec, storage, done)
    order = drive(searcher, 20, lambda cfg: TOY_SCORES[cfg["_pipeline"]])
    assert len(order) == 13 and Counter(order) == {"a": 7, "b": 6}
    assert all(abs(order[:k].count("a") - order[:k].count("b")) <= 1 for k in range(14)), "equal at every moment"
    studies = load_studies(spec, storage)
    assert {p: count_finished(s) for p, s in studies.items()} == {"a": 7, "b": 6}
    assert all(t.user_attrs["pipeline"] == p for p, s in studies.items() for t in s.trials)
    assert "roi.margin" not in studies["a"].trials[0].params and "roi.margin" in studies["b"].trials[0].params
    assert "pipeline" not in studies["a"].trials[0].params, "the pipeline is no longer a sampled parameter"


def test_trials_per_pipeline_sets_unequal_shares(tmp_path):
    from harness.tune.tuner import make_searcher

    spec = toy_spec(trials=None, trials_per_pipeline={"a": 2, "b": 4})
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    done, _ = reconcile(spec, storage)
    assert Counter(drive(make_searcher(spec, storage, done), 10, lambda cfg: 0.8)) == {"a": 2, "b": 4}


def counts(spec: StudySpec, storage) -> dict[str, Counter]:
    return {p: Counter(t.state.name for t in s.trials) for p, s in load_studies(spec, storage).items()}


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_equal_budgets_through_ray_tune_and_after_a_resume(ray_cpus, tmp_path):
    """Real Ray Tune + Optuna + stage-aligned ASHA with a toy trainable: a scores 0.84, b 0.80."""
    from harness.tune.testing import toy_trainable
    from harness.tune.tuner import search_tuner

    spec = toy_spec()
    paths = StudyPaths(tmp_path / "study")
    paths.root.mkdir()
    storage = open_storage(paths.storage_url)
    done, _ = reconcile(spec, storage)
    search_tuner(spec, paths, storage=storage, done=done, data_dir=None, cuda=False, trainable=toy_trainable).fit()
    studies = load_studies(spec, storage)
    finished = {p: count_finished(s) for p, s in studies.items()}
    print("equal budgets, fresh study:", {p: dict(c) for p, c in counts(spec, storage).items()})
    assert finished == {"a": 6, "b": 6}
    best = best_trials(studies.values(), spec)
    assert set(best) == {"a", "b"} and best["a"].values[0] > best["b"].values[0]

    # a killed driver left an unequal study behind: a 4 finished + 1 running, b 1 finished
    spec2 = toy_spec(name="toy2")
    done, _ = reconcile(spec2, storage)
    s2 = load_studies(spec2, storage)
    for p, n in (("a", 4), ("b", 1)):
        for _ in range(n):
            t = s2[p].ask({"eval.mask_threshold": optuna.distributions.FloatDistribution(0.3, 0.7)})
            t.set_user_attr("pipeline", p)
            s2[p].tell(t, TOY_SCORES[p])
    running = s2["a"].ask({"eval.mask_threshold": optuna.distributions.FloatDistribution(0.3, 0.7)})
    done, requeued = reconcile(spec2, storage)
    assert (done, requeued) == ({"a": 4, "b": 1}, 1)
    search_tuner(spec2, paths, storage=storage, done=done, data_dir=None, cuda=False, trainable=toy_trainable).fit()
    after = load_studies(spec2, storage)
    print("equal budgets after a resume:", {p: dict(c) for p, c in counts(spec2, storage).items()})
    assert {p: count_finished(s) for p, s in after.items()} == {"a": 6, "b": 6}
    retry = [t for t in after["a"].trials if t.user_attrs.get("retry_of") == running.number]
    assert len(retry) == 1 and retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry[0].params == after["a"].trials[running.number].params


def test_tpe_models_results_after_a_third_of_a_small_budget(tmp_path):
    """Optuna's default of 10 random start-up trials made every study of < 10 trials per pipeline (the
    quickstart's 3) random search; the start-up share now follows each pipeline's budget."""
    from harness.tune.tuner import make_searcher, startup_trials

    assert [startup_trials(n) for n in (1, 3, 6, 9, 30, 100)] == [2, 2, 2, 3, 10, 10]
    spec = toy_spec(trials=None, trials_per_pipeline={"a": 3, "b": 12})
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    done, _ = reconcile(spec, storage)
    searcher = make_searcher(spec, storage, done)
    startup = {p: s._sampler._n_startup_trials for p, s in searcher._searchers.items()}
    assert startup == {"a": 2, "b": 4}
