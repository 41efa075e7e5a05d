"""Read run and study directories into plain data for the report (the only file reading here).

A RUN_DIR is what ``harness run`` writes (``config.yaml``, ``metrics.json``, ``predictions.csv``,
``pred_masks/``, ``stages/*.json``). A STUDY_DIR holds ``study.yaml``/``optuna.db``, ``trials/*``
and ``final/*`` run dirs; its report uses the ``final`` runs when there are any, else the trials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from harness.config import validate_run_config
from harness.errors import ConfigError, DataError
from harness.metrics import REQUIRED_COLUMNS, run_metrics
from harness.pipelines.registry import label_of, order_key, pipeline_names
from harness.report.variants import split_variants
from harness.rundir import MARKERS as RUN_MARKERS
from harness.rundir import RunDir

logger = logging.getLogger(__name__)

STUDY_MARKERS = ("study.yaml", "optuna.db", "trials", "final")
SUBSETS = ("auto", "val", "test")


@dataclass(frozen=True)
class RunData:
    """One evaluated run restricted to the subset the report uses (rows sorted by image_id)."""

    path: Path
    name: str
    pipeline: str  # a registered pipeline name
    seed: int | None
    subset: str
    predictions: pd.DataFrame
    metrics: dict[str, float]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    patient_ids: bool = True
    """Whether predictions.csv gave every image's patient; if not, an image counts as its own
    patient (the ``patient_id`` column then holds the image id)."""

    @property
    def label(self) -> str:
        """The pipeline's report label ("A", "B", "C", ...), from the pipeline registry."""
        return label_of(self.pipeline)


@dataclass(frozen=True)
class Sources:
    """What one ``harness report`` call reads: runs, and the study they came from (if any)."""

    runs: list[RunData]
    study_dir: Path | None = None
    origin: str = "runs"  # "runs", "final" or "trials"
    order: list[str] = field(default_factory=list)  # pipeline names in the study's order (empty: registry order)


def is_study_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in STUDY_MARKERS) and not (path / "metrics.json").exists()


def _read_config(run_dir: RunDir) -> dict[str, Any]:
    """The run's config: validated, or (an older or newer schema) its raw fields, whose sections must
    still be mappings."""
    from harness.config import RunConfig

    raw = run_dir.read_config()
    if not raw:
        return {}
    for key, value in raw.items():
        field = RunConfig.model_fields.get(str(key))
        section = field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if section and not isinstance(value, dict):
            raise DataError(f"{run_dir.config}: {key} must be a mapping of fields, but got {value!r}; re-run "
                            "`harness run` to rewrite it.")
    try:
        return validate_run_config(raw, str(run_dir.config)).to_dict()
    except ConfigError as e:  # an older/newer schema: the report only needs a few fields
        logger.warning("%s does not validate as a RunConfig (%s); using its raw fields", run_dir.config, e.problems[0])
        return raw


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _clean_stage(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A stage record as the training figures use it: ``history`` a list of per-epoch mappings of numbers,
    ``best_epoch`` a number, ``metric_name`` text; anything else is dropped with a warning (the report's
    curves are a view of the run, not a reason to refuse it)."""
    out = dict(record)
    history = out.get("history")
    if history is not None:
        rows = history if isinstance(history, list) else None
        if rows is None or not all(isinstance(r, dict) and all(_number(v) or v is None for v in r.values())
                                   for r in rows):
            logger.warning("%s: 'history' is not a list of per-epoch numbers; no training curve for this stage", path)
            out.pop("history")
    if "best_epoch" in out and not _number(out["best_epoch"]):
        out.pop("best_epoch")
    if "metric_name" in out:
        out["metric_name"] = str(out["metric_name"])
    return out


def _read_stages(run_dir: RunDir) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(run_dir.stages.glob("*.json")):
        try:
            out[p.stem] = _clean_stage(p, RunDir.read_json(p))
        except DataError as e:
            logger.warning("skipping stage file: %s", e.problems[0])
    return out


def _read_predictions(path: Path) -> pd.DataFrame:
    return RunDir(path.parent).read_predictions(REQUIRED_COLUMNS + ("image_id",))


def pick_subset(predictions: list[pd.DataFrame], subset: str) -> str:
    """``auto`` -> "test" when every run has test rows, else "val"."""
    if subset not in SUBSETS:
        raise ConfigError(f"--subset must be one of {', '.join(SUBSETS)}, but got {subset!r}.")
    if subset != "auto":
        return subset
    return "test" if predictions and all((df["subset"] == "test").any() for df in predictions) else "val"


def _with_patients(rows: pd.DataFrame, where: Path) -> tuple[pd.DataFrame, bool]:
    """``rows`` with a text ``patient_id`` for every image, and whether predictions.csv had them all;
    missing ones fall back to the image id (each such image its own patient), with a warning."""
    rows = rows.copy()
    if "patient_id" not in rows.columns:
        logger.warning("%s has no patient_id column (written before it existed): each image counts as its own "
                       "patient, so intervals and p-values may be too narrow; re-run `harness run` to add it", where)
        rows["patient_id"] = rows["image_id"]
        return rows, False
    blank = rows["patient_id"].isna() | (rows["patient_id"].astype(str).str.strip() == "")
    if blank.any():
        logger.warning("%s: %d row(s) without patient_id (e.g. image %s) count as their own patients", where,
                       int(blank.sum()), rows.loc[blank, "image_id"].iloc[0])
        rows.loc[blank, "patient_id"] = rows.loc[blank, "image_id"]
    rows["patient_id"] = rows["patient_id"].astype(str)
    return rows, not blank.any()


def load_run(run_dir: Path, subset: str = "auto") -> RunData:
    """Read one RUN_DIR; ``subset`` "auto" uses its test rows when it has any."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory.")
    for marker in RUN_MARKERS:
        if not (run_dir / marker).exists():
            raise DataError(f"{run_dir / marker}: not found; run `harness run` first (or pass a study directory).")
    rd = RunDir(run_dir)
    stored = rd.read_metrics("val")
    config = _read_config(rd)
    pipeline = str(config.get("pipeline") or stored.get("pipeline") or "").lower()
    if pipeline not in pipeline_names():
        raise DataError(f"{run_dir}: cannot tell the pipeline (config.yaml/metrics.json 'pipeline' is {pipeline!r}, "
                        f"expected one of {', '.join(pipeline_names())}).")
    runtime = config.get("runtime")
    seed = runtime.get("seed") if isinstance(runtime, dict) else None
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise DataError(f"{rd.config}: runtime.seed must be an integer, but got {seed!r}; re-run `harness run` "
                        "to rewrite it.")
    table = _read_predictions(run_dir / "predictions.csv")
    chosen = pick_subset([table], subset)
    rows = table[table["subset"] == chosen].sort_values("image_id", kind="stable").reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{run_dir / 'predictions.csv'}: no rows with subset={chosen}; "
                        f"it has {sorted(table['subset'].unique())}.")
    rows, has_patients = _with_patients(rows, run_dir / "predictions.csv")
    try:
        metrics = run_metrics(rows)
    except ValueError as e:
        raise DataError(f"{run_dir / 'predictions.csv'}: {e}.") from None
    stored_ba = stored.get("balanced_accuracy") if chosen == "val" else None
    if stored_ba is not None and not _number(stored_ba):
        logger.warning("%s: balanced_accuracy is %r, not a number; the report uses predictions.csv",
                       rd.metrics("val"), stored_ba)
    elif stored_ba is not None and not np.isclose(stored_ba, metrics["balanced_accuracy"], atol=1e-6, equal_nan=True):
        logger.warning("%s: metrics.json disagrees with predictions.csv (balanced accuracy %.4f vs %.4f); "
                       "the report uses predictions.csv", run_dir, stored_ba, metrics["balanced_accuracy"])
    return RunData(path=run_dir.resolve(), name=run_dir.name, pipeline=pipeline, seed=seed, subset=chosen,
                   predictions=rows, metrics=metrics, stages=_read_stages(rd), config=config,
                   patient_ids=has_patients)


def _once(paths: list[Path]) -> list[Path]:
    """``paths`` without repeats of the same directory (same resolved path), with a warning: a run
    given twice must not count as two seeds."""
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            logger.warning("%s is given twice (as %s and %s); it counts once", key, seen[key], p)
            continue
        seen[key] = p
    return list(seen.values())


def _run_dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and (p / "metrics.json").exists())


def load_sources(paths: list[Path], subset: str = "auto") -> Sources:
    """RUN_DIR... or one STUDY_DIR -> :class:`Sources` with one common subset for every run."""
    if not paths:
        raise ConfigError("give at least one run directory or a study directory.")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise DataError(f"{p}: no such directory.")
    study_dir, origin = None, "runs"
    if len(paths) == 1 and is_study_dir(paths[0]):
        study_dir = paths[0]
        run_dirs = _run_dirs(study_dir / "final")
        origin = "final"
        if not run_dirs:
            run_dirs, origin = _run_dirs(study_dir / "trials"), "trials"
        if not run_dirs:
            logger.warning("%s: no finished run under final/ or trials/; the report shows the study only", study_dir)
    else:
        bad = [p for p in paths if is_study_dir(p)]
        if bad:
            raise ConfigError(f"{bad[0]} is a study directory; pass it alone, not together with run directories.")
        run_dirs = _once(paths)
    tables = {d: _read_predictions(d / "predictions.csv") for d in run_dirs if (d / "predictions.csv").exists()}
    wanted = "val" if origin == "trials" and subset == "auto" else subset
    chosen = pick_subset(list(tables.values()), wanted)
    runs = [load_run(d, chosen) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # same directory name in different parents
        runs = [RunData(**{**r.__dict__, "name": f"{r.path.parent.name}/{r.name}"}) for r in runs]
    logger.info("report on %d run(s) (%s subset) from %s", len(runs), chosen, study_dir or "run directories")
    return Sources(runs=runs, study_dir=study_dir, origin=origin, order=_study_order(study_dir))


def _study_order(study_dir: Path | None) -> list[str]:
    """The ``pipelines`` of a study's study.yaml (the order its report shows them in)."""
    import yaml

    if study_dir is None or not (study_dir / "study.yaml").is_file():
        return []
    try:
        raw = yaml.safe_load((study_dir / "study.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    pipes = raw.get("pipelines") if isinstance(raw, dict) else None
    return [str(p) for p in pipes] if isinstance(pipes, list) else []


def group_by_pipeline(runs: list[RunData], order: list[str] | None = None) -> dict[str, list[RunData]]:
    """Report label -> runs, for the pipelines present, in ``order`` (pipeline names, e.g. a study's
    ``pipelines``) and then the registry's order. Runs of a pipeline whose configs differ in more
    than the seed are separate groups labelled by the differing fields, e.g. ``B (roi.margin=0.3)``
    (:func:`harness.report.variants.split_variants`); only runs of one variant are pooled."""
    present = sorted({r.pipeline for r in runs}, key=lambda p: ((order or []).index(p) if p in (order or [])
                                                               else len(order or []) + order_key(p)))
    groups: dict[str, list[RunData]] = {}
    for p in present:
        variants = split_variants(p, [r for r in runs if r.pipeline == p])
        if len(variants) > 1:
            logger.warning("pipeline %s: runs of %d configurations are reported as separate columns: %s", label_of(p),
                           len(variants), "; ".join(variants))
        groups.update(variants)
    return groups
