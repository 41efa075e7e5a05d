"""Cross-validated selection (``selection: {folds: K}``): per-fold runs of a trial, the mean objective,
``fold_values``/``fold_std`` in the final report, W&B, ``folds.json`` and Optuna's user attributes."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import pytest

from harness.tune.folds import (
    FOLD_STD,
    FOLD_VALUES,
    fold_attrs,
    fold_runs,
    read_folds,
    report_fields,
    summarise_folds,
    write_folds,
)
from harness.tune.study import StudySpec
from harness.tune.trainable import execute_trial

FAST = {"joint.image_size": 32, "joint.optim.epochs": 1, "joint.optim.batch_size": 8, "eval.tta": False,
        "runtime.threads": 1}


def spec(folds: int, wandb: bool = False, **fields) -> StudySpec:
    return StudySpec.model_validate({
        "name": "cv", "pipelines": ["c"], "base": {"c": "tiny-c"}, "overrides": FAST, "trials": 2,
        "selection": {"folds": folds}, "wandb": {"enabled": wandb, "mode": "offline"},
        "data": {"split": "study", "val_fraction": 0.2, "test_fraction": 0.2}, **fields})


def test_summary_is_the_mean_with_per_fold_values_and_sample_std():
    per_fold = [{"balanced_accuracy": 0.5, "dice_mean": 0.7, "pipeline": "c", "n": 4},
                {"balanced_accuracy": 0.7, "dice_mean": 0.5, "pipeline": "c", "n": 5},
                {"balanced_accuracy": 0.9, "dice_mean": 0.6, "pipeline": "c"}]
    s = summarise_folds(per_fold, ["balanced_accuracy", "dice_mean"])
    assert s["mean"] == pytest.approx({"balanced_accuracy": 0.7, "dice_mean": 0.6})  # "n" is not in every fold
    assert s["fold_values"]["balanced_accuracy"] == [0.5, 0.7, 0.9]
    assert s["fold_std"]["balanced_accuracy"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))
    fields = report_fields(s)
    assert fields[FOLD_VALUES] == [0.5, 0.7, 0.9] and fields[FOLD_STD] == pytest.approx(0.2)
    assert fields["fold2/dice_mean"] == 0.6 and fields["folds"] == 3 and "fold_std/dice_mean" in fields
    nan = summarise_folds([{"balanced_accuracy": 0.5}, {"balanced_accuracy": math.nan}], ["balanced_accuracy"])
    assert math.isnan(nan["mean"]["balanced_accuracy"]), "a failed fold fails the trial, it is not averaged away"


def test_one_fold_is_one_run_in_the_trial_directory(tmp_path):
    assert fold_runs(tmp_path, 1) == [(tmp_path, {})]
    assert fold_runs(tmp_path, 3)[2] == (tmp_path / "fold2", {"data.folds": 3, "data.fold": 2})


def test_k1_trial_is_unchanged(make_dataset, tmp_path):
    data = make_dataset(tmp_path / "ds", n=20, size=32, images_per_patient=1)
    reports: list[dict] = []
    final = execute_trial(spec(1), "c", {}, tmp_path / "t", store=tmp_path / "store", data_dir=data,
                          subsets=("val",), report=reports.append)
    assert (tmp_path / "t" / "metrics.json").is_file() and not (tmp_path / "t" / "fold0").exists()
    assert not {FOLD_VALUES, FOLD_STD, "folds"} & set(final) and read_folds(tmp_path / "t") is None
    assert final["balanced_accuracy"] == json.loads((tmp_path / "t" / "metrics.json").read_text())["balanced_accuracy"]
    assert len(reports) == 1 and final["final"] == 1


@pytest.mark.slow
def test_k5_trial_runs_every_fold_and_reports_their_mean(make_dataset, tmp_path, monkeypatch):
    from harness.tune.tracking import read_record

    monkeypatch.setenv("WANDB_MODE", "offline")
    data = make_dataset(tmp_path / "ds", n=40, size=32, images_per_patient=1)
    reports: list[dict] = []
    trial = tmp_path / "trials" / "t1"
    final = execute_trial(spec(5, wandb=True), "c", {}, trial, store=tmp_path / "store", data_dir=data,
                          subsets=("val",), report=reports.append, tracker_dir=tmp_path / "wandb")
    per_fold = [json.loads((trial / f"fold{k}" / "metrics.json").read_text())["balanced_accuracy"] for k in range(5)]
    assert final[FOLD_VALUES] == pytest.approx(per_fold)
    assert final["balanced_accuracy"] == pytest.approx(statistics.fmean(per_fold))
    assert final[FOLD_STD] == pytest.approx(statistics.stdev(per_fold)) and final["folds"] == 5
    assert len(reports) == 1, "only fold 0 reports per epoch: the scheduler compares one fold of every trial"
    vals = [set(json.loads((data / "splits" / f"study.fold{k}of5.json").read_text())["subsets"]["val"])
            for k in range(5)]
    assert len(set().union(*vals)) == sum(map(len, vals)), "the folds' validation subsets are disjoint"
    assert len(list((tmp_path / "store").glob("joint-*"))) == 5, "the stage cache keys each fold"
    assert read_folds(trial)["fold_values"]["balanced_accuracy"] == pytest.approx(per_fold)  # type: ignore[index]
    (run,) = list((tmp_path / "wandb").rglob("offline-run-*"))
    record = read_record(trial)
    assert record["run_dir"] == str(run.resolve())
    summary = record["summary"]
    assert summary[FOLD_STD] == pytest.approx(final[FOLD_STD]) and summary["fold4/balanced_accuracy"] == per_fold[4]


def test_fold_values_become_optuna_user_attributes_of_the_trial(tmp_path):
    """The searcher's contract: attributes from the final report are set before the trial is told."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize")
    summary = summarise_folds([{"balanced_accuracy": v} for v in (0.5, 0.6, math.nan)], ["balanced_accuracy"])
    result = {"balanced_accuracy": summary["mean"]["balanced_accuracy"], **report_fields(summary)}
    trial = study.ask()
    for key, value in fold_attrs(result).items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.55)
    attrs = optuna.load_study(study_name=study.study_name, storage=study._storage).trials[0].user_attrs
    assert attrs[FOLD_VALUES] == [0.5, 0.6, None] and attrs[FOLD_STD] is None  # JSON has no NaN
    assert fold_attrs({"balanced_accuracy": 0.5, "final": 1}) == {} == fold_attrs(None), "K = 1: no attributes"
    write_folds(tmp_path / "t", summary, [tmp_path / "t" / f"fold{k}" for k in range(3)])
    assert json.loads((tmp_path / "t" / "folds.json").read_text())["runs"] == ["fold0", "fold1", "fold2"]


def test_paper_table9_selects_on_five_folds_and_the_quickstart_on_one():
    from harness.tune.study import load_study

    root = Path(__file__).resolve().parents[2] / "studies"
    assert load_study(root / "paper_table9.yaml").selection.folds == 5
    assert load_study(root / "quickstart.yaml").selection.folds == 1


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_study_with_two_folds_on_ray(make_dataset, tmp_path):
    """Search trials run both folds; the final run trains on the study split; the report shows the gap."""
    import ray

    from harness.report.selection import gap_table
    from harness.tune.runner import run_study

    data = make_dataset(tmp_path / "ds", n=32, size=40, images_per_patient=2)
    cv = spec(2, final={"seeds": [7]}, scheduler={"type": "fifo"}, resources={"cpu": 1})
    ray.shutdown()
    try:
        summary = run_study(cv, tmp_path / "study", data_dir=data, ray_init={"num_cpus": 2, "log_to_driver": False})
    finally:
        ray.shutdown()
    study = optuna.load_study(study_name="cv:c", storage=f"sqlite:///{tmp_path / 'study' / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    for t in complete:
        trial_dir = tmp_path / "study" / "trials" / t.user_attrs["trial_dir"]
        folds = read_folds(trial_dir)
        assert folds is not None and (trial_dir / "fold1" / "metrics.json").is_file()
        assert t.values[0] == pytest.approx(statistics.fmean(folds["fold_values"]["balanced_accuracy"]))
        assert t.user_attrs["fold_values"] == pytest.approx(folds["fold_values"]["balanced_accuracy"])
        assert t.user_attrs["fold_std"] >= 0
    (final,) = summary["final"]
    assert (Path(final) / "metrics_test.json").is_file() and not (Path(final) / "fold0").exists()
    assert (data / "splits" / "study.fold1of2.json").is_file()
    _, gaps = gap_table(tmp_path / "study")
    assert gaps["selected on"].tolist() == ["2-fold CV"] and gaps["seeds"].tolist() == [1]
