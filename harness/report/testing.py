"""Fake run and study directories for tests and benchmarks of the report (no training).

:func:`make_dataset` draws ultrasound-like images (speckle, a dark elliptic lesion) with their
masks; :func:`make_run` writes a RUN_DIR obeying the ``harness run`` contract for one pipeline,
with plausible errors: wrong classes, boundary errors, missed lesions (in pipeline A a lesion
called Normal gets no mask), false lesions on Normal images.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness.config import RunConfig, dump_yaml
from harness.data.io import write_mask
from harness.metrics import run_metrics
from harness.metrics.segmentation import per_image

STAGES = {"a": (("classifier3", "classifier"), ("segmenter_binary", "segmenter")),
          "b": (("segmenter3", "segmenter"), ("roi_classifier", "classifier"))}


@dataclass(frozen=True)
class FakeImage:
    image_id: str
    label: int
    image_path: Path
    mask_path: Path | None
    gt: np.ndarray


def _ellipse(shape: tuple[int, int], rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, np.uint8)
    cy, cx = int(rng.uniform(0.3, 0.7) * h), int(rng.uniform(0.3, 0.7) * w)
    ay = max(2, int(rng.uniform(0.06, 0.25) * h * scale))
    ax = max(2, int(rng.uniform(0.06, 0.3) * w * scale))
    cv2.ellipse(m, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def make_dataset(root: Path, n: int = 30, seed: int = 0, size: tuple[int, int] = (96, 128)) -> list[FakeImage]:
    """``n`` images in ``root/images`` with masks in ``root/masks`` (classes ~ 45/30/25 %)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        label = int(rng.choice(3, p=[0.45, 0.3, 0.25]))
        image_id = f"{('benign', 'malignant', 'normal')[label]}_{i:04d}"
        h, w = size
        yy = np.linspace(0, 1, h)[:, None]
        tissue = 90 + 60 * np.sin(6 * yy + rng.uniform(0, 6)) * np.ones((1, w))
        img = tissue * rng.gamma(4.0, 0.25, size)  # multiplicative speckle
        gt = _ellipse(size, rng) if label < 2 else np.zeros(size, bool)
        img[gt] *= 0.35
        img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
        image_path = root / "images" / f"{image_id}.png"
        cv2.imwrite(str(image_path), img)
        mask_path = None
        if label < 2:
            mask_path = root / "masks" / f"{image_id}_mask.png"
            write_mask(mask_path, gt)
        out.append(FakeImage(image_id, label, image_path.resolve(), mask_path.resolve() if mask_path else None, gt))
    return out


def _predict_mask(gt: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """A perturbed copy of ``gt``: shifted, dilated/eroded, sometimes badly wrong."""
    if rng.random() > quality:  # a poor mask: a different blob overlapping a little or not at all
        return _ellipse(gt.shape, rng, 0.8)
    shift = rng.integers(-3, 4, size=2)
    m = np.roll(gt, tuple(shift), axis=(0, 1)).astype(np.uint8)
    k = int(rng.integers(1, 4))
    kernel = np.ones((k, k), np.uint8)
    m = cv2.dilate(m, kernel) if rng.random() < 0.5 else cv2.erode(m, kernel)
    return m.astype(bool)


def _history(rng: np.random.Generator, epochs: int, kind: str) -> list[dict[str, float]]:
    rows, best = [], 0.0
    for e in range(1, epochs + 1):
        base = math.exp(-e / (epochs / 3))
        metric = min(0.97, (0.55 if kind == "classifier" else 0.45) + 0.4 * (1 - base) + rng.normal(0, 0.015))
        rows.append({"epoch": e, "train_loss": 0.2 + 0.9 * base + rng.normal(0, 0.01),
                     "val_loss": 0.3 + 0.8 * base + 0.002 * e + rng.normal(0, 0.02),
                     "val_metric": metric, "lr": 1e-4 * (0.5 ** (e // 8)), "seconds": 1.0})
        best = max(best, metric)
    return rows


def make_run(run_dir: Path, images: list[FakeImage], pipeline: str, seed: int = 42, accuracy: float = 0.85,
             seg_quality: float = 0.85, test_fraction: float = 0.0, epochs: int = 12,
             checkpoints: dict[str, Path] | None = None) -> Path:
    """Write a RUN_DIR for ``pipeline`` ("a"/"b") evaluated on ``images`` (test rows: the last
    ``test_fraction`` of them). ``checkpoints`` maps stage names to state-dict paths."""
    rng = np.random.default_rng(seed + (0 if pipeline == "a" else 1000))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "pred_masks").mkdir(exist_ok=True)
    n_test = int(round(test_fraction * len(images)))
    rows = []
    for k, im in enumerate(images):
        correct = rng.random() < accuracy
        pred_label = im.label if correct else int(rng.choice([c for c in range(3) if c != im.label]))
        logits = rng.normal(0, 1, 3)
        logits[pred_label] += 2.5
        probs = np.exp(logits) / np.exp(logits).sum()
        if im.label < 2 and pred_label < 2:
            pred = _predict_mask(im.gt, rng, seg_quality)
        elif im.label < 2:  # called Normal: A skips segmentation; B found nothing (mostly)
            pred = np.zeros_like(im.gt) if pipeline == "a" or rng.random() < 0.7 else _predict_mask(im.gt, rng, 0.3)
        elif pred_label < 2:  # false lesion on a Normal image
            pred = _ellipse(im.gt.shape, rng, 0.4)
        else:
            pred = np.zeros_like(im.gt)
        write_mask(run_dir / "pred_masks" / f"{im.image_id}.png", pred)
        seg = per_image(pred, im.gt)
        rows.append({"subset": "test" if k >= len(images) - n_test else "val", "image_id": im.image_id,
                     "label": im.label, "pred_label": pred_label, "prob_benign": probs[0],
                     "prob_malignant": probs[1], "prob_normal": probs[2], **seg,
                     "gt_pixels": int(im.gt.sum()), "pred_pixels": int(pred.sum()),
                     "image_path": str(im.image_path), "mask_path": str(im.mask_path or "")})
    table = pd.DataFrame(rows)
    table.to_csv(run_dir / "predictions.csv", index=False)
    config = RunConfig(name=run_dir.name, pipeline=pipeline, runtime={"seed": seed})
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    for subset in sorted(table["subset"].unique()):
        m = {**run_metrics(table[table["subset"] == subset]), "pipeline": pipeline, "subset": subset}
        name = "metrics.json" if subset == "val" else f"metrics_{subset}.json"
        (run_dir / name).write_text(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                                for k, v in m.items()}, indent=2))
    (run_dir / "stages").mkdir(exist_ok=True)
    for stage, kind in STAGES[pipeline]:
        history = _history(rng, epochs, kind)
        best = max(history, key=lambda r: r["val_metric"])
        ckpt = (checkpoints or {}).get(stage)
        (run_dir / "stages" / f"{stage}.json").write_text(json.dumps({
            "stage": stage, "kind": kind, "hash": f"{stage[:4]}{seed:08d}",
            "checkpoint": str(ckpt) if ckpt else str(run_dir / "checkpoints" / f"{stage}.pt"),
            "epochs": epochs, "best_epoch": best["epoch"], "best_metric": best["val_metric"],
            "metric_name": "balanced_accuracy" if kind == "classifier" else "dice",
            "seconds": float(epochs), "history": history}, indent=2))
    return run_dir


def make_runs(root: Path, n_images: int = 30, seeds: tuple[int, ...] = (42,), size: tuple[int, int] = (96, 128),
              test_fraction: float = 0.0) -> list[Path]:
    """A shared fake dataset in ``root/data`` and one A and one B run per seed in ``root/``."""
    images = make_dataset(root / "data", n_images, seed=0, size=size)
    runs = []
    for s in seeds:
        runs.append(make_run(root / f"run_a_s{s}", images, "a", seed=s, accuracy=0.86, seg_quality=0.8,
                             test_fraction=test_fraction))
        runs.append(make_run(root / f"run_b_s{s}", images, "b", seed=s, accuracy=0.8, seg_quality=0.9,
                             test_fraction=test_fraction))
    return runs


# ------------------------------------------------------------------------------------------------
# A stand-in for harness.pipelines.artifacts (Grad-CAM) with a tiny timm model


CLASSIFIER_STAGE = {"a": "classifier3", "b": "roi_classifier"}
_MEAN, _STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def add_fake_classifier(run_dir: Path, image_size: int = 64, seed: int = 0) -> Path:
    """Save a random ``test_efficientnet`` state dict as the run's classifier checkpoint."""
    import timm
    import torch
    import yaml

    pipeline = yaml.safe_load((run_dir / "config.yaml").read_text())["pipeline"]
    stage = CLASSIFIER_STAGE[pipeline]
    torch.manual_seed(seed)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=3 if pipeline == "a" else 2)
    ckpt = run_dir / "checkpoints" / f"{stage}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ckpt)
    path = run_dir / "stages" / f"{stage}.json"
    info = json.loads(path.read_text())
    info.update(checkpoint=str(ckpt.resolve()), image_size=image_size)
    path.write_text(json.dumps(info, indent=2))
    return ckpt


class FakeArtifacts:
    """``load_classifier`` / ``classifier_input`` with the contract of harness.pipelines.artifacts,
    for runs prepared with :func:`add_fake_classifier`."""

    def load_classifier(self, run_dir: Path):
        import timm
        import torch
        import yaml

        pipeline = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["pipeline"]
        info = json.loads((Path(run_dir) / "stages" / f"{CLASSIFIER_STAGE[pipeline]}.json").read_text())
        ckpt = Path(info["checkpoint"])
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint")
        names = ("Benign", "Malignant", "Normal") if pipeline == "a" else ("Benign", "Malignant")
        model = timm.create_model("test_efficientnet", pretrained=False, num_classes=len(names))
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        return model.eval(), int(info.get("image_size", 64)), "full" if pipeline == "a" else "roi", names

    def classifier_input(self, run_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        from harness.data.io import read_image, read_mask
        from harness.pipelines.roi import crop_resize, roi_box

        _, size, kind, _ = self.load_classifier(run_dir)
        table = pd.read_csv(Path(run_dir) / "predictions.csv")
        row = table[table["image_id"].astype(str) == image_id].iloc[0]
        image = read_image(Path(row["image_path"]))
        if kind == "roi":
            mask = read_mask(Path(run_dir) / "pred_masks" / f"{image_id}.png")
            display = crop_resize(image, roi_box(mask, 0.2), size)
        else:
            display = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        x = (np.repeat(display[..., None], 3, axis=2) / 255.0 - _MEAN) / _STD
        return x.astype(np.float32), display


def make_study_db(study_dir: Path, n_trials: int = 12, seed: int = 0, name: str = "fake-study") -> Path:
    """``study_dir/optuna.db`` with trials of both pipelines in every state the report handles."""
    import datetime as dt

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir.mkdir(parents=True, exist_ok=True)
    db = study_dir / "optuna.db"
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{db.resolve()}", direction="maximize")
    study.set_user_attr("spec", {"objectives": [{"metric": "balanced_accuracy"}]})
    rng = np.random.default_rng(seed)
    dists = {"classifier.lr_head": FloatDistribution(1e-4, 1e-2, log=True),
             "roi.margin": FloatDistribution(0.0, 0.5), "classifier.sampler": CategoricalDistribution(["random", "weighted"])}
    t0 = dt.datetime(2026, 11, 20, 9, 0)
    for k in range(n_trials):
        pipeline = "a" if k % 2 == 0 else "b"
        params = {"classifier.lr_head": float(10 ** rng.uniform(-4, -2)), "roi.margin": float(rng.uniform(0, 0.5)),
                  "classifier.sampler": str(rng.choice(["random", "weighted"]))}
        value = 0.6 + 0.3 * (1 - abs(np.log10(params["classifier.lr_head"]) + 3)) + rng.normal(0, 0.02)
        state = optuna.trial.TrialState.COMPLETE
        if k == n_trials - 1:
            state = optuna.trial.TrialState.FAIL
        elif k == n_trials - 2:
            state = optuna.trial.TrialState.PRUNED
        start = t0 + dt.timedelta(minutes=7 * k)
        failed = state == optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.FrozenTrial(
            number=k, state=state, value=None if failed else float(value), datetime_start=start,
            datetime_complete=start + dt.timedelta(minutes=5), params=params, distributions=dists,
            user_attrs={"pipeline": pipeline}, system_attrs={}, intermediate_values={}, trial_id=k))
    running = study.ask()
    running.set_user_attr("pipeline", "a")
    return db

