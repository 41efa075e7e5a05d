"""`harness study status` on per-pipeline studies (no Ray)."""

from __future__ import annotations

import json

import yaml

from harness.tune.bookkeeping import load_studies, open_storage, reconcile
from harness.tune.paths import StudyPaths
from harness.tune.status import format_status, study_table
from harness.tune.study import StudySpec


def test_status_lists_every_pipelines_trials_against_its_budget(tmp_path):
    spec = StudySpec.model_validate({"name": "st", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"},
                                     "search_space": {"params": {"eval.tta": {"type": "categorical",
                                                                              "choices": [True, False]}}},
                                     "trials": 6, "sampler": "random"})
    paths = StudyPaths(tmp_path)
    paths.spec.write_text(yaml.safe_dump(json.loads(spec.model_dump_json())))
    storage = open_storage(paths.storage_url)
    reconcile(spec, storage)
    studies = load_studies(spec, storage)
    trial = studies["a"].ask()
    trial.suggest_categorical("eval.tta", [True, False])
    trial.set_user_attr("pipeline", "a")
    studies["a"].tell(trial, 0.7)
    studies["b"].enqueue_trial({"eval.tta": True})  # queued: no user attributes yet

    table, best = study_table(tmp_path)
    assert table[["pipeline", "number", "state"]].values.tolist() == [["a", 0, "COMPLETE"], ["b", 0, "WAITING"]]
    text = format_status(table, best)
    assert "finished / budget: a 1/3, b 0/3" in text and "best a: trial 0 values=[0.7]" in text
