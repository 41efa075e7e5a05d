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
    checkpoints/         the stage store when no shared one is given

Every write is atomic (temp file + rename), so a crash never leaves half a file behind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.data.io import write_bytes_atomic, write_mask
from harness.errors import DataError

CONFIG = "config.yaml"
PREDICTIONS = "predictions.csv"
MASK_DIR = "pred_masks"
STAGE_DIR = "stages"
RUN_INFO = "run.json"
CHECKPOINTS = "checkpoints"
SUBSETS = ("val", "test")
MARKERS = ("metrics.json", PREDICTIONS)
"""A directory holding both files is a run directory."""

PREDICTION_COLUMNS = ["subset", "image_id", "label", "pred_label", "prob_benign", "prob_malignant", "prob_normal",
                      "dice", "iou", "precision", "recall", "specificity", "hd95", "hd95_penalised", "gt_pixels",
                      "pred_pixels", "image_path", "mask_path", "patient_id"]
"""``patient_id`` is the dataset record's patient (the image id when the metadata has none): the
report resamples and permutes patients. ``hd95_penalised`` is HD95 with a missed lesion at the image
diagonal. Files written before either column existed still load (the report falls back)."""


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
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise DataError(f"{self.config}: cannot read YAML ({e}).") from None
        if not isinstance(raw, dict):
            raise DataError(f"{self.config}: expected a mapping of config fields, but got {type(raw).__name__}.")
        return raw

    def read_stages(self) -> dict[str, dict[str, Any]]:
        """Stage records by name; unreadable files raise (the caller decides whether to skip)."""
        return {p.stem: self.read_json(p) for p in sorted(self.stages.glob("*.json"))}

    def read_predictions(self, required: tuple[str, ...] = ("image_id", "label", "pred_label")) -> pd.DataFrame:
        """predictions.csv with ``image_id`` (and ``patient_id``, when present) as text and a ``subset``
        column (old files: all "val")."""
        try:
            df = pd.read_csv(self.predictions, keep_default_na=True, dtype={"image_id": str, "patient_id": str})
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"{self.predictions}: cannot read CSV ({e}).") from None
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(f"{self.predictions}: missing column(s) {', '.join(missing)}; "
                            "re-run `harness run` to rewrite it.")
        if "subset" not in df.columns:
            df["subset"] = "val"
        df["image_id"] = df["image_id"].astype(str)
        for col in ("image_path", "mask_path"):
            if col in df.columns:
                df[col] = df[col].fillna("").astype(str)
        return df
