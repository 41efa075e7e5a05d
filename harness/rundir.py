"""The run-directory contract: the file names every run directory has, one writer and one reader.

``harness run`` (via :func:`harness.pipelines.run.run_trial`) writes it, the report loader, the
pipelines' artefacts (Grad-CAM) and the test doubles read or fake it through this module only::

    config.yaml          the resolved RunConfig
    metrics.json         validation metrics (metrics_<subset>.json for the other subsets, e.g. test)
    predictions.csv      one row per evaluated image (PREDICTION_COLUMNS)
    pred_masks/<id>.png  predicted mask at the image's original size (0/255)
    stages/<stage>.json  stage record: config hash, epochs, best metric, seconds, per-epoch history
    run.json             wall time, stages trained, device
    manifest.json        code, package versions, data + split fingerprints, seeds, command (harness.manifest)
    wandb.json           what was logged to W&B, when tracked (harness.tune.tracking)
    checkpoints/         the stage store when no shared one is given (trained stages and their cached
                         inference outputs, harness.engine.outputs)

Every write is atomic (temp file + rename), so a crash never leaves half a file behind, and a run
writes its outputs to ``.partial/`` and moves them in only when it has finished (:meth:`RunDir.publish`),
so a run that fails in a directory of an earlier run leaves that run's files as they were.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from harness import CLASS_NAMES
from harness.data.io import write_bytes_atomic, write_mask
from harness.errors import DataError

CONFIG = "config.yaml"
PREDICTIONS = "predictions.csv"
MASK_DIR = "pred_masks"
STAGE_DIR = "stages"
RUN_INFO = "run.json"
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
SUBSETS = ("val", "test")
MARKERS = ("metrics.json", PREDICTIONS)
"""A directory holding both files is a run directory."""
PARTIAL = ".partial"
"""Where a run stages its outputs (inside its run directory) until it has finished: see :meth:`RunDir.publish`."""

PREDICTION_COLUMNS = ["subset", "image_id", "label", "pred_label", "prob_benign", "prob_malignant", "prob_normal",
                      "dice", "iou", "precision", "recall", "specificity", "hd95", "hd95_penalised", "gt_pixels",
                      "pred_pixels", "image_path", "mask_path", "patient_id"]
"""``patient_id`` is the dataset record's patient (the image id when the metadata has none): the
report resamples and permutes patients. ``hd95_penalised`` is HD95 with a missed lesion at the image
diagonal. Files written before either column existed still load (the report falls back)."""


LABEL_COLUMNS = ("label", "pred_label")
NUMERIC_COLUMNS = (*LABEL_COLUMNS, "prob_benign", "prob_malignant", "prob_normal", "dice", "iou", "precision", "recall",
                   "specificity", "hd95", "hd95_penalised", "gt_pixels", "pred_pixels")
"""Columns of predictions.csv that hold numbers; the labels are class indices."""


def metrics_name(subset: str) -> str:
    """``metrics.json`` for validation, ``metrics_<subset>.json`` otherwise."""
    return "metrics.json" if subset == "val" else f"metrics_{subset}.json"


def json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null (strict JSON readers reject NaN)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class RunDir:
    """One run directory; paths, atomic writers and readers with one-line errors."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # --- paths -------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def stages(self) -> Path:
        return self.path / STAGE_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def metrics(self, subset: str = "val") -> Path:
        return self.path / metrics_name(subset)

    def mask(self, image_id: str) -> Path:
        """``pred_masks/<image_id>.png``; an id that would leave the directory is refused."""
        root = (self.path / MASK_DIR).resolve()
        target = (root / f"{image_id}.png").resolve()
        if root not in target.parents:
            raise DataError(f"image id {image_id!r}: would write outside {root}; image ids must be plain names.")
        return target

    def is_run_dir(self) -> bool:
        return self.path.is_dir() and all((self.path / m).exists() for m in MARKERS)

    def outputs(self) -> list[Path]:
        """The files and directories a run writes (not the stage store), in the order :meth:`publish` moves
        them: the two markers last, so that a reader never takes a half-moved directory for a run."""
        return [self.path / MASK_DIR, self.stages, self.path / RUN_INFO, self.path / MANIFEST,
                *[self.metrics(s) for s in SUBSETS if s != "val"], self.config, self.predictions, self.metrics("val")]

    # --- staging -----------------------------------------------------------------------------
    def staging(self) -> RunDir:
        """A new, empty staging directory ``.partial`` inside this run directory (a stale one, left by a
        killed run, is removed). A run writes there and :meth:`publish` moves its outputs here, so that a
        run that fails leaves the previous run's outputs as they were (config, metrics, predictions and
        masks of one run, never a mix)."""
        import shutil

        stage = self.path / PARTIAL
        if stage.is_dir() and not stage.is_symlink():
            shutil.rmtree(stage)
        self.path.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
        return RunDir(stage)

    def publish(self, staged: RunDir) -> None:
        """Replace this run directory's outputs with those written to ``staged`` (then removed): outputs
        of the previous run that the new one does not have (e.g. metrics_test.json) are removed too."""
        import os
        import shutil

        for dst, src in zip(self.outputs(), staged.outputs(), strict=True):
            if src.exists():
                if src.is_dir() and dst.exists():
                    old = self.path / f"{PARTIAL}-old-{dst.name}"
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(dst, old)
                    os.replace(src, dst)
                    shutil.rmtree(old)
                else:
                    os.replace(src, dst)
            elif dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():
                dst.unlink()
        shutil.rmtree(staged.path)

    # --- writers -----------------------------------------------------------------------------
    def _write_text(self, path: Path, text: str) -> None:
        write_bytes_atomic(path, text.encode())

    def write_config(self, config: Any) -> None:
        """``config`` is a RunConfig (or its dict)."""
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        self._write_text(self.config, yaml.safe_dump(data, sort_keys=False))

    def write_stage(self, name: str, record: dict[str, Any]) -> None:
        self._write_text(self.stages / f"{name}.json", json.dumps(json_safe(record), indent=2, default=str))

    def write_metrics(self, subset: str, metrics: dict[str, Any]) -> None:
        self._write_text(self.metrics(subset), json.dumps(json_safe(metrics), indent=2))

    def write_predictions(self, table: pd.DataFrame) -> None:
        self._write_text(self.predictions, table.to_csv(index=False))

    def write_mask(self, image_id: str, mask: Any) -> None:
        write_mask(self.mask(image_id), mask)

    def write_run_info(self, info: dict[str, Any]) -> None:
        self._write_text(self.path / RUN_INFO, json.dumps(info, indent=2, default=str))

    # --- readers -----------------------------------------------------------------------------
    @staticmethod
    def read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read JSON ({e}).") from None
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object, but got {type(data).__name__}.")
        return data

    def read_metrics(self, subset: str = "val") -> dict[str, Any]:
        return self.read_json(self.metrics(subset))

    def read_config(self) -> dict[str, Any]:
        """The raw config mapping ({} when the file is missing)."""
        if not self.config.exists():
            return {}
        try:
            raw = yaml.safe_load(self.config.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise DataError(f"{self.config}{where}: cannot read YAML ({getattr(e, 'problem', None) or e}).") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{self.config}: cannot read YAML ({e}).") from None
        if not isinstance(raw, dict):
            raise DataError(f"{self.config}: expected a mapping of config fields, but got {type(raw).__name__}.")
        return raw

    def read_stages(self) -> dict[str, dict[str, Any]]:
        """Stage records by name; unreadable files raise (the caller decides whether to skip)."""
        return {p.stem: self.read_json(p) for p in sorted(self.stages.glob("*.json"))}

    def _check_numbers(self, df: pd.DataFrame) -> None:
        """Numeric columns hold numbers (NaN allowed where a value can be undefined), labels are classes."""
        for col in NUMERIC_COLUMNS:
            if col not in df.columns:
                continue
            values = pd.to_numeric(df[col], errors="coerce")
            bad = (values.isna() & df[col].notna()) | np.isinf(values.to_numpy(dtype=float))
            if col in LABEL_COLUMNS:
                bad |= values.isna() | ~values.isin(range(len(CLASS_NAMES)))
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                allowed = (f"a class {', '.join(f'{k} ({n})' for k, n in enumerate(CLASS_NAMES))}"
                           if col in LABEL_COLUMNS else "a finite number (or empty)")
                value = df[col].iloc[row]
                shown = repr(value.item() if hasattr(value, "item") else value)
                raise DataError(f"{self.predictions}: line {row + 2}, column {col}: must be {allowed}, but got "
                                f"{shown}; re-run `harness run` to rewrite it.")

    def read_predictions(self, required: tuple[str, ...] = ("image_id", "label", "pred_label")) -> pd.DataFrame:
        """predictions.csv with ``image_id`` (and ``patient_id``, when present) as text and a ``subset``
        column (old files: all "val")."""
        try:
            df = pd.read_csv(self.predictions, keep_default_na=True, dtype={"image_id": str, "patient_id": str})
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"{self.predictions}: cannot read CSV ({' '.join(str(e).split())}).") from None
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(f"{self.predictions}: missing column(s) {', '.join(missing)}; "
                            "re-run `harness run` to rewrite it.")
        self._check_numbers(df)
        if "subset" not in df.columns:
            df["subset"] = "val"
        df["image_id"] = df["image_id"].astype(str)
        for col in ("image_path", "mask_path"):
            if col in df.columns:
                df[col] = df[col].fillna("").astype(str)
        return df
