"""A fake Optuna study on disk for the report's study section (no Ray, no training).

:func:`make_study_db` fills ``optuna.db`` with trials of both pipelines in every state the report
must handle (complete, pruned, failed, still running), with parameters of the kinds a search space
has (log-float, float, categorical) and a value that depends on one of them, so importances and
"best so far" curves have something to show.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np


def make_study_db(study_dir: Path, n_trials: int = 12, seed: int = 0, name: str = "fake-study",
                  per_pipeline: bool = True) -> Path:
    """``study_dir/optuna.db`` with ``n_trials`` finished trials alternating pipelines A and B
    (the last one FAIL, the one before PRUNED, the rest COMPLETE) plus one RUNNING trial of A.

    ``per_pipeline``: each pipeline in its own Optuna study ``<name>:<pipeline>`` (as studies are
    written now); False: one study for both, as databases written before that were."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import FrozenTrial, TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir.mkdir(parents=True, exist_ok=True)
    db = study_dir / "optuna.db"
    url = f"sqlite:///{db.resolve()}"
    spec = {"objectives": [{"metric": "balanced_accuracy"}]}

    def create(study_name: str, pipeline: str | None) -> optuna.Study:
        study = optuna.create_study(study_name=study_name, storage=url, direction="maximize")
        study.set_user_attr("spec", spec)
        if pipeline:
            study.set_user_attr("study", name)
            study.set_user_attr("pipeline", pipeline)
        return study

    studies = ({p: create(f"{name}:{p}", p) for p in ("a", "b")} if per_pipeline
               else dict.fromkeys(("a", "b"), create(name, None)))
    rng = np.random.default_rng(seed)
    dists = {"classifier.lr_head": FloatDistribution(1e-4, 1e-2, log=True),
             "roi.margin": FloatDistribution(0.0, 0.5),
             "classifier.sampler": CategoricalDistribution(["random", "weighted"])}
    t0 = dt.datetime(2026, 11, 20, 9, 0)
    for k in range(n_trials):
        lr_head = float(10 ** rng.uniform(-4, -2))
        params = {"classifier.lr_head": lr_head, "roi.margin": float(rng.uniform(0, 0.5)),
                  "classifier.sampler": str(rng.choice(["random", "weighted"]))}
        # best near lr_head = 1e-3, so the importance of lr_head stands out
        value = 0.6 + 0.3 * (1 - abs(np.log10(lr_head) + 3)) + rng.normal(0, 0.02)
        state = {n_trials - 1: TrialState.FAIL, n_trials - 2: TrialState.PRUNED}.get(k, TrialState.COMPLETE)
        start = t0 + dt.timedelta(minutes=7 * k)
        pipeline = "a" if k % 2 == 0 else "b"
        studies[pipeline].add_trial(FrozenTrial(
            number=k, state=state, value=float(value) if state == TrialState.COMPLETE else None,
            datetime_start=start, datetime_complete=start + dt.timedelta(minutes=5), params=params,
            distributions=dists, user_attrs={"pipeline": pipeline}, system_attrs={}, intermediate_values={},
            trial_id=k))
    running = studies["a"].ask()
    running.set_user_attr("pipeline", "a")
    return db
