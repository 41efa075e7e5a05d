"""Cross-validated selection (``selection: {folds: K}``): what a search trial runs on each fold, how the
folds' metrics become the trial's objective, and where the per-fold values are kept.

A search trial of a study with K > 1 runs its config once per fold (``TRIAL_DIR/fold<k>``, each an
ordinary run directory whose ``config.yaml`` names ``data.folds`` and ``data.fold``). Its objective is
the mean over folds; the per-fold values of the first objective (``fold_values``, a list) and their
sample standard deviation (``fold_std``) go into the trial's final report (and W&B), into
``TRIAL_DIR/folds.json`` and, through the searcher (:func:`fold_attrs`), into the trial's Optuna
user attributes. K = 1 changes nothing: the trial is one run in ``TRIAL_DIR`` on the study split's
validation subset, as before.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FOLDS_FILE = "folds.json"
FOLD_VALUES = "fold_values"
"""Optuna user attribute and report key: the first objective on each fold, in fold order."""
FOLD_STD = "fold_std"
"""Optuna user attribute and report key: sample standard deviation (ddof 1) of ``fold_values``."""


def fold_runs(run_dir: Path, folds: int) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, config overrides) of each fold; one plain run in ``run_dir`` when ``folds`` is 1."""
    if folds == 1:
        return [(run_dir, {})]
    return [(run_dir / f"fold{k}", {"data.folds": folds, "data.fold": k}) for k in range(folds)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarise_folds(per_fold: Sequence[dict[str, Any]], objectives: Sequence[str]) -> dict[str, Any]:
    """The mean over folds of every numeric metric all folds have, and each objective's per-fold values
    and their sample standard deviation. A fold whose objective is NaN makes the mean NaN (the trial
    then fails, as a K = 1 trial with a NaN objective does)."""
    keys = [k for k, v in per_fold[0].items() if _number(v) and all(_number(f.get(k)) for f in per_fold)]
    mean = {k: sum(float(f[k]) for f in per_fold) / len(per_fold) for k in keys}
    values = {m: [float(f[m]) if _number(f.get(m)) else math.nan for f in per_fold] for m in objectives}
    return {"folds": len(per_fold), "objectives": list(objectives), "mean": mean, "fold_values": values,
            "fold_std": {m: _std(v) for m, v in values.items()}}


def report_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """Fields of a trial's final report (and W&B summary): fold count, the first objective's
    ``fold_values`` and ``fold_std``, and one scalar per fold and objective (``fold2/balanced_accuracy``)."""
    first = summary["objectives"][0]
    out: dict[str, Any] = {"folds": summary["folds"], FOLD_VALUES: list(summary["fold_values"][first]),
                           FOLD_STD: summary["fold_std"][first]}
    for m, values in summary["fold_values"].items():
        out.update({f"fold{k}/{m}": v for k, v in enumerate(values)})
        out[f"{FOLD_STD}/{m}"] = summary["fold_std"][m]
    return out


def write_folds(run_dir: Path, summary: dict[str, Any], fold_dirs: Sequence[Path]) -> Path:
    """``run_dir/folds.json``: the summary plus each fold's run directory (relative)."""
    from harness.data.io import write_bytes_atomic
    from harness.rundir import json_safe

    values = {m: [None if math.isnan(v) else v for v in vs] for m, vs in summary["fold_values"].items()}
    payload = {**summary, "mean": json_safe(summary["mean"]), "fold_values": values,
               "fold_std": json_safe(summary["fold_std"]),
               "runs": [str(d.relative_to(run_dir)) for d in fold_dirs]}
    path = run_dir / FOLDS_FILE
    write_bytes_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())
    return path


def read_folds(run_dir: Path) -> dict[str, Any] | None:
    """The ``folds.json`` of a trial directory, or None when it has none (K = 1, or not finished)."""
    try:
        data = json.loads((run_dir / FOLDS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fold_attrs(result: dict[str, Any] | None) -> dict[str, Any]:
    """The Optuna user attributes of a trial from its final report: ``fold_values`` and ``fold_std``
    when the trial ran K > 1 folds, else nothing.

    The searcher sets them on the trial just before it tells Optuna the outcome (Optuna refuses to
    change a finished trial)::

        for key, value in fold_attrs(result).items():
            self._ot_trials[trial_id].set_user_attr(key, value)
    """
    if not result or FOLD_VALUES not in result:
        return {}
    values = [None if isinstance(v, float) and math.isnan(v) else v for v in result[FOLD_VALUES]]
    std = result.get(FOLD_STD)
    return {FOLD_VALUES: values, FOLD_STD: None if isinstance(std, float) and math.isnan(std) else std}
