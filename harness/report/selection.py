"""The validation-to-test gap of each pipeline's selected configuration: the winner's curse, made visible.

The best of many configurations on one validation subset looks better there than it is, and its test
value in the final runs is usually lower. This table puts the two side by side for each pipeline: the
selected trial's validation objective (with ``selection: {folds: K}``, the mean over the K
cross-validation folds, +- the sample standard deviation over folds) and the test value of the same
metric in the final runs of that configuration (mean +- sample standard deviation over seeds).
"""

from __future__ import annotations

import logging
import math
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import DataError
from harness.report.html import paragraph, table

logger = logging.getLogger(__name__)

COLUMNS = ["pipeline", "trial", "selected on", "validation", "fold std", "test", "test std", "seeds", "gap"]


def selected_trials(db: Path, trials_dir: Path | None = None) -> tuple[str, dict[str, dict[str, Any]]]:
    """(first objective's metric, pipeline -> the selected trial) from a study's Optuna storage.

    The selected trial is the best COMPLETE trial of each pipeline on the first objective, the rule the
    study driver uses for its final runs; every Optuna study in the file is read (one per study, or one
    per pipeline). Per-fold values come from the trial's user attributes, else from the
    ``folds.json`` of its directory under ``trials_dir``.
    """
    from harness.tune.storage import open_readonly, reading

    storage = open_readonly(Path(db))  # the report never writes to the study's database
    with reading(str(db)):
        return _selected(storage, trials_dir)


def _selected(storage, trials_dir: Path | None) -> tuple[str, dict[str, dict[str, Any]]]:
    import optuna

    from harness.tune.folds import FOLD_STD, FOLD_VALUES, read_folds

    names = optuna.get_all_study_names(storage=storage)
    metric = "objective"
    best: dict[str, dict[str, Any]] = {}
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        objectives = (study.user_attrs.get("spec") or {}).get("objectives") or [{}]
        metric = str(objectives[0].get("metric") or metric)
        sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            p = t.user_attrs.get("pipeline")
            if p and t.values and (p not in best or sign * t.values[0] > sign * best[p]["value"]):
                best[p] = {"trial": t.number, "value": float(t.values[0]), FOLD_VALUES: t.user_attrs.get(FOLD_VALUES),
                           FOLD_STD: t.user_attrs.get(FOLD_STD),
                           "trial_dir": t.user_attrs.get("trial_dir") or t.user_attrs.get("ray_trial_id")}
    for sel in best.values():
        folds = read_folds(trials_dir / str(sel["trial_dir"])) if trials_dir and sel["trial_dir"] else None
        if sel[FOLD_VALUES] is None and folds:
            sel[FOLD_VALUES], sel[FOLD_STD] = folds[FOLD_VALUES][metric], folds[FOLD_STD][metric]
    return metric, best


def final_test_values(final_dir: Path, metric: str) -> dict[str, list[float]]:
    """Pipeline -> the test value of ``metric`` of each final run under ``final_dir``."""
    from harness.rundir import RunDir

    out: dict[str, list[float]] = {}
    for d in sorted(p for p in Path(final_dir).glob("*") if p.is_dir()) if Path(final_dir).is_dir() else []:
        run = RunDir(d)
        if not run.metrics("test").exists():
            continue
        try:
            pipeline = str(run.read_config().get("pipeline") or run.read_metrics("test").get("pipeline") or "")
            value = run.read_metrics("test").get(metric)
        except DataError as e:
            logger.warning("validation-to-test gap: skipping %s (%s)", d, e.problems[0])
            continue
        if pipeline and isinstance(value, (int, float)) and math.isfinite(value):
            out.setdefault(pipeline, []).append(float(value))
    return out


def gap_table(study_dir: Path) -> tuple[str, pd.DataFrame]:
    """(metric, one row per pipeline with a selected trial): validation, test and their difference."""
    from harness.pipelines.registry import label_of, order_key

    db = Path(study_dir) / "optuna.db"
    if not db.exists():
        return "objective", pd.DataFrame(columns=COLUMNS)
    metric, best = selected_trials(db, Path(study_dir) / "trials")
    tests = final_test_values(Path(study_dir) / "final", metric)
    rows = []
    for p in sorted(best, key=order_key):
        sel, values = best[p], tests.get(p, [])
        folds = len(sel["fold_values"]) if isinstance(sel["fold_values"], list) else 1
        test = statistics.fmean(values) if values else math.nan
        rows.append({"pipeline": label_of(p), "trial": sel["trial"],
                     "selected on": f"{folds}-fold CV" if folds > 1 else "validation split",
                     "validation": sel["value"],
                     "fold std": float(sel["fold_std"]) if isinstance(sel["fold_std"], (int, float)) else math.nan,
                     "test": test, "test std": statistics.stdev(values) if len(values) > 1 else math.nan,
                     "seeds": len(values), "gap": test - sel["value"]})
    return metric, pd.DataFrame(rows, columns=COLUMNS)


def gap_blocks(study_dir: Path) -> list[str]:
    """HTML blocks of the study section: a heading and the gap table, or a line saying why there is none."""
    metric, gaps = gap_table(study_dir)
    blocks = ["<h3>Validation-to-test gap of the selected configurations</h3>"]
    if gaps.empty:
        return [*blocks, paragraph("No complete trial to compare with its final runs.")]
    formats = {c: "3" for c in ("validation", "fold std", "test", "test std", "gap")}
    caption = (f"{metric}. Validation: the selected trial's objective (the best complete trial of the pipeline); "
               "with K-fold selection the mean over the K patient-wise cross-validation folds of the non-test "
               "images, fold std the sample standard deviation over folds. Test: the final runs of that "
               "configuration (trained on the study split's train part, seeds as listed), mean and sample "
               "standard deviation over seeds. Gap = test - validation: for a metric to maximise, a large "
               "negative gap (positive for one to minimise) is the winner's curse of selecting on a small "
               "validation set.")
    return [*blocks, table(gaps, formats, caption)]
