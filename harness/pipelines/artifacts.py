"""A run's explained classifier and its exact inputs, rebuilt from the run directory (Grad-CAM).

Which stage is explained and on what input comes from the pipeline's registry spec (``explain``);
the input is made by the pipeline itself (:meth:`~harness.pipelines.base.Pipeline.explain_input`),
so B's ROI crop here is the crop B's classifier saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import CLASS_NAMES
from harness.config import RunConfig
from harness.data.io import read_image, read_mask
from harness.data.transforms import to_input
from harness.errors import DataError, one_line
from harness.models.segmenter import ClassificationBranch
from harness.pipelines.registry import PipelineSpec, StageSpec, get_pipeline
from harness.rundir import RunDir


def run_config(run_dir: Path) -> RunConfig:
    """The run's validated config.yaml (one line naming the file when it is missing or invalid)."""
    from harness.config import validate_run_config

    rd = RunDir(run_dir)
    if not rd.config.is_file():
        raise DataError(f"{rd.config}: missing; is {run_dir} a run directory written by `harness run`?")
    return validate_run_config(rd.read_config(), str(rd.config))


def load_stage(run_dir: Path, config: RunConfig, stage: StageSpec, device: torch.device | str = "cpu") -> nn.Module:
    """One trained stage of the run: its model built from the config, weights from the checkpoint its
    ``stages/<name>.json`` record names (a regular file only), in eval mode on ``device``."""
    from harness.pipelines.stages import STAGE_KINDS

    path = RunDir(run_dir).stages / f"{stage.name}.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; the run did not finish stage {stage.name}.")
    record = RunDir.read_json(path)
    section = getattr(config, stage.section).model_copy(update={"pretrained": False})
    model = STAGE_KINDS[stage.kind].build(section, stage.classes, config.data.channels)
    checkpoint = Path(str(record.get("checkpoint", "")))
    if not checkpoint.is_file():  # a stage record names any path: no FIFO, device or directory is opened
        raise DataError(f"{run_dir}: the {stage.name} checkpoint {checkpoint} is not a regular file.")
    try:
        model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    except Exception as e:  # a cut or tampered file: torch raises RuntimeError, UnpicklingError, EOFError ...
        raise DataError(f"{run_dir}: cannot load the {stage.name} checkpoint {checkpoint} ({type(e).__name__}: "
                        f"{one_line(e, 160)}); run the configuration again to retrain it.") from None
    return model.to(device).eval()


def _explained(cfg: RunConfig) -> tuple[PipelineSpec, str, str]:
    spec = get_pipeline(cfg.pipeline)
    if spec.explain is None:
        raise DataError(f"pipeline {spec.name} has no classifier stage to explain.")
    return spec, *spec.explain


def load_classifier(run_dir: Path) -> tuple[nn.Module, int, str, tuple[str, ...]]:
    """(model in eval mode on CPU, input size, "full" | "roi", class names) of the run's classifier."""
    cfg = run_config(run_dir)
    spec, stage_name, input_kind = _explained(cfg)
    stage = spec.stage(stage_name)
    section = getattr(cfg, stage.section)
    model = load_stage(run_dir, cfg, stage)
    if stage.kind == "joint":
        model = ClassificationBranch(model)
    return model.eval(), section.image_size, input_kind, CLASS_NAMES[: max(stage.classes, 2)]


def classifier_input(run_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(normalised H x W x C float32 input, H x W uint8 image shown) for one evaluated image."""
    cfg = run_config(run_dir)
    rd = RunDir(run_dir)
    table = rd.read_predictions()
    rows = table[table["image_id"] == str(image_id)]
    if rows.empty:
        raise DataError(f"{rd.predictions}: no image {image_id}.")
    image = read_image(Path(rows.iloc[0]["image_path"]))
    mask_file = rd.mask(str(image_id))
    mask = read_mask(mask_file) if mask_file.exists() else np.zeros(image.shape[:2], bool)
    display = get_pipeline(cfg.pipeline).create().explain_input(cfg, image, mask)
    return to_input(display, cfg.data.channels).transpose(1, 2, 0), display
