"""Typed, validated run configuration.

Every knob a study can vary is a named field whose default is the paper's value (sections 3-4);
an ablation is a config diff. Configs are frozen pydantic models, validated once at the edge with
every problem reported together (see :func:`load_run_config`).
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, did_you_mean


class Strict(BaseModel):
    """Base: frozen, unknown keys are errors, and no float field takes inf or NaN (a ``.inf`` learning
    rate or loss weight is refused here, not after a stage trained on it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


SEED_MAX = 2**32 - 1
"""numpy's legacy seeding (and Optuna's samplers through it) takes seeds in [0, 2**32 - 1]."""

Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="a random seed in [0, 2**32 - 1]")]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=+-]{0,127}")
"""A run or study name: it becomes a directory name (runs/<name>-<time>, runs/studies/<name>)."""


def check_name(value: str) -> str:
    """A name used as one directory: letters, digits, ``_ . = + -``, starting with a letter or digit, at most
    128 characters (so no ``/``, ``..``, absolute path or empty name can leave ``runs/``)."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError("must be a plain name (letters, digits, _ . = + -, starting with a letter or digit, "
                         "at most 128 characters): it becomes a directory name")
    return value


class DataConfig(Strict):
    """Where the dataset is, how its metadata columns are named, and which split (and fold) a run uses.

    ``val_fraction``, ``test_fraction``, ``split_seed`` and ``group_duplicates`` say how to *create*
    ``splits/<split>.json`` when it is missing; an existing split file is used as it was written.
    """

    dir: Path | None = Field(None, description="dataset directory; None = the synthetic demo set")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> column in the xlsx, e.g. {label: diagnosis}",
    )
    split: str = Field("default", description="split name under DIR/splits/")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)
    split_seed: Seed = 42
    group_duplicates: bool = Field(
        False, description="when the split is created, keep near-duplicate images (perceptual hash) in one subset")
    folds: int = Field(1, ge=1, le=20, description="K > 1: train on fold `fold` of a patient-wise stratified K-fold "
                       "cross-validation over the split's non-test images (splits/<split>.fold<k>of<K>.json)")
    fold: int = Field(0, ge=0, description="which cross-validation fold (0-based) is the validation subset")
    channels: Literal[1, 3] = Field(3, description="model input channels (gray replicated to 3)")
    cache_dir: Path | None = Field(None, description="decoded-image cache; None = DIR/.cache")
    num_workers: int = Field(0, ge=0, le=64)

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction must be < 0.9, but got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if self.fold >= self.folds:
            raise ValueError(f"fold must be in [0, folds - 1] = [0, {self.folds - 1}], but got fold={self.fold}")
        return self


class AugmentConfig(Strict):
    """The paper's training augmentation; each part can be switched off for an ablation."""

    hflip: bool = True
    vflip: bool = Field(
        True,
        description="paper default; vertical flips put posterior acoustic shadowing upside down",
    )
    rotate_limit: float = Field(15.0, ge=0, le=180)
    elastic: bool = True
    clahe: bool = True
    brightness_contrast: bool = True
    speckle: bool = True
    strength: float = Field(1.0, ge=0, le=2, description="scales every probability")


class LossWeights(Strict):
    """Hybrid segmentation loss weights (eq. 6): alpha*Dice + beta*Focal + gamma*Lovasz."""

    dice: float = Field(0.4, ge=0)
    focal: float = Field(0.3, ge=0)
    lovasz: float = Field(0.3, ge=0)

    @model_validator(mode="after")
    def _nonzero(self) -> LossWeights:
        if self.dice + self.focal + self.lovasz <= 0:
            raise ValueError("at least one of dice, focal, lovasz must be > 0")
        return self


class OptimConfig(Strict):
    """Optimiser, scheduler and stopping for one stage (shared shape for every stage)."""

    epochs: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)
    weight_decay: float = Field(1e-2, ge=0)
    patience: int = Field(15, ge=1, description="early stopping on the stage's validation metric")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(5, ge=0)
    min_lr: float = Field(1e-7, ge=0)
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for smoke tests")


class ClassifierConfig(Strict):
    """timm backbone + the paper's head (BatchNorm-Linear-ReLU-Dropout-Linear)."""

    backbone: str = "efficientnet_b7"
    image_size: int = Field(300, ge=16, le=2048)
    pretrained: bool = True
    head_hidden: int = Field(512, ge=8)
    head_dropout: float = Field(0.3, ge=0, lt=1)
    lr_backbone: float = Field(1e-5, gt=0)
    lr_head: float = Field(1e-3, gt=0)
    class_weighting: bool = Field(True, description="CE weights w_c = N / (C n_c), eq. 1")
    sampler: Literal["random", "weighted"] = "random"
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()


class SegmenterConfig(Strict):
    """smp U-Net++ (any smp/timm encoder) with the hybrid Dice/Focal/Lovasz loss."""

    arch: str = "unetplusplus"
    encoder: str = "efficientnet-b7"
    image_size: int = Field(320, ge=32, le=2048)
    pretrained: bool = True
    decoder_channels: tuple[int, int, int, int, int] | None = Field(
        None, description="U-Net++ decoder widths; None = smp's default (256, 128, 64, 32, 16)")
    lr: float = Field(1e-4, gt=0)
    loss: LossWeights = LossWeights()
    sampler: Literal["random", "weighted"] = Field("weighted", description="paper: weighted")
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()

    @model_validator(mode="after")
    def _divisible(self) -> SegmenterConfig:
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 for U-Net++, but got {self.image_size}")
        return self


class JointConfig(SegmenterConfig):
    """Pipeline C: one multi-task U-Net++ (the fields of ``segmenter``) with a classification head on its
    encoder (smp ``aux_params``), trained on hybrid loss + ``cls_weight`` x class-weighted CE."""

    cls_weight: float = Field(1.0, ge=0, allow_inf_nan=False,
                              description="weight of the classification CE next to the hybrid mask loss")
    head_dropout: float = Field(0.3, ge=0, lt=1)
    class_weighting: bool = Field(True, description="CE weights w_c = N / (C n_c), eq. 1")


class RoiConfig(Strict):
    """Pipeline B: lesion detection threshold and ROI crop (eqs. 9-12)."""

    margin: float = Field(0.2, ge=0, le=2, description="rho at inference")
    train_margin: float = Field(0.2, ge=0, le=2, description="rho for the classifier's training crops")
    lesion_min_pixels: int = Field(50, ge=0, description="lesion present if > N px at seg resolution")
    lesion_min_fraction: float | None = Field(
        None, ge=0, lt=1, description="alternative to lesion_min_pixels, as a fraction of the image"
    )
    train_crops: Literal["predicted", "ground_truth", "ground_truth_jitter"] = Field(
        "predicted", description="paper: masks predicted on the classifier's own training images"
    )
    jitter: float = Field(0.1, ge=0, le=1, description="box jitter (fraction of size) for ground_truth_jitter")


class EvalConfig(Strict):
    """Evaluation-only knobs: changing them never retrains a stage."""

    mask_threshold: float = Field(0.5, gt=0, lt=1)
    tta: bool = True
    tta_views: tuple[Literal["identity", "hflip", "vflip"], ...] = ("identity", "hflip", "vflip")
    batch_size: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _views(self) -> EvalConfig:
        if not self.tta_views or self.tta_views[0] != "identity":
            raise ValueError('tta_views must start with "identity"')
        if len(set(self.tta_views)) != len(self.tta_views):
            raise ValueError(f"tta_views has duplicates: {list(self.tta_views)}")
        return self


class RuntimeConfig(Strict):
    """Where and how to compute; never changes results except through `seed`."""

    seed: Seed = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = all cores")
    deterministic: bool = Field(
        False, description="force deterministic cuDNN (slower); CPU runs are always reproducible")
    progress: Literal["auto", "on", "off"] = "auto"
    compile: Literal["auto", "on", "off"] = Field(
        "off", description="torch.compile the model for training (auto = on CUDA only); first epoch pays the "
        "compilation, falls back to eager with one warning when inductor cannot compile")


class RunConfig(Strict):
    """One pipeline variant: everything a run or a study trial needs."""

    name: str = Field("run", description="names the default run directory runs/<name>-<time>")
    pipeline: str = Field("a", description="a registered pipeline (harness.pipelines.registry)")
    data: DataConfig = DataConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    segmenter: SegmenterConfig = SegmenterConfig()
    joint: JointConfig = JointConfig()
    roi: RoiConfig = RoiConfig()
    eval: EvalConfig = EvalConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("pipeline")
    @classmethod
    def _registered(cls, value: str) -> str:
        from harness.pipelines.registry import pipeline_names

        names = pipeline_names()
        if value not in names:
            raise ValueError(f"must be a registered pipeline ({', '.join(names)})" + did_you_mean(value, names))
        return value

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# Loading, overrides and error messages


def bundled_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("harness.presets").iterdir() if p.name.endswith(".yaml"))


def preset_names() -> list[str]:
    """Names of the presets (``harness run paper-a``): bundled files and those pipelines register."""
    from harness.pipelines.registry import registered_presets

    return sorted(set(bundled_presets()) | set(registered_presets()))


def read_text(path: Path) -> str:
    """A YAML (or other text) file's content; unreadable or not UTF-8 is one :class:`ConfigError` line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e}).") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                          "save it as UTF-8.") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, but got {type(data).__name__}.")
    return data


def resolve_config_source(source: str | Path) -> tuple[dict[str, Any], str]:
    """A preset name or a YAML path -> (raw dict, label used in error messages)."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ConfigError(f"{path}: no such config file.")
        return _read_yaml(path), str(path)
    names = preset_names()
    if str(source) not in names:
        raise ConfigError(
            f'"{source}" is neither a config file nor a preset ({", ".join(names)}).'
            + did_you_mean(str(source), names)
        )
    from harness.pipelines.registry import registered_presets

    file_name = str(source)
    if str(source) in registered_presets():
        pipeline, preset = registered_presets()[str(source)]
        if not isinstance(preset, str):  # an inline preset of a (plug-in) pipeline
            return {"pipeline": pipeline, **copy.deepcopy(dict(preset))}, f"preset {source}"
        file_name = preset
    ref = resources.files("harness.presets") / f"{file_name}.yaml"
    with resources.as_file(ref) as p:
        return _read_yaml(Path(p)), f"preset {source}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """'classifier.optim.epochs=3' -> (['classifier','optim','epochs'], 3). Values are YAML."""
    if "=" not in text:
        raise ConfigError(f'--set {text}: expected key=value, e.g. --set classifier.optim.epochs=3.')
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text}: empty key.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``raw`` with dotted overrides applied (list of k=v or dict)."""
    out = json.loads(json.dumps(raw, default=str))
    items = (
        [parse_override(o) for o in overrides]
        if isinstance(overrides, list)
        else [(k.split("."), v) for k, v in overrides.items()]
    )
    for keys, value in items:
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {}
                node[k] = child
            node = child
        _merge(node, keys[-1], copy.deepcopy(value))
    return out


def _merge(node: dict[str, Any], key: str, value: Any) -> None:
    """Set ``node[key] = value``; a mapping merges into an existing mapping instead of replacing it."""
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = value


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at ``loc`` (the parent of an unknown key)."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        current = field.annotation
    return list(current.model_fields)


def field_problem(dotted: str, model: type[BaseModel] | None = None) -> str | None:
    """Why ``dotted`` (e.g. ``roi.margn``) names no field of ``model`` (default :class:`RunConfig`), with a
    "did you mean"; None when it does (a key under a mapping field such as ``data.columns`` counts)."""
    from typing import get_origin

    current: type[BaseModel] = model or RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = current.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the run config"
            return f"{where} has no field {part!r}." + did_you_mean(part, fields)
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
            continue
        if i < len(parts) - 1 and get_origin(annotation) is not dict:
            return f"{'.'.join(parts[: i + 1])} is a single value, not a group of fields."
        return None
    return None


def format_validation_error(err: ValidationError, model: type[BaseModel], where: str) -> list[str]:
    """One line per problem: dotted field, the bad value, what is allowed, where it came from."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _field_names(model, loc[:-1]))
            lines.append(f"{dotted}: unknown field ({where}).{hint}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f", but got {dotted}={value!r}"
        lines.append(f"{dotted}: {msg}{shown} ({where}).")
    return lines


def validate_run_config(raw: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a raw dict; all problems in one :class:`ConfigError`."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, RunConfig, where)) from None


def load_run_config(source: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> RunConfig:
    """Preset name or YAML path, plus ``--set`` overrides -> validated :class:`RunConfig`."""
    raw, where = resolve_config_source(source)
    if overrides:
        raw = apply_overrides(raw, overrides)
        where = f"{where} + --set"
    return validate_run_config(raw, where)


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
