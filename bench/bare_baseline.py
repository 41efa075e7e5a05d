"""The bare-script reference: plain PyTorch + smp + timm, trained for a given CPU time, scored like a harness run.

    .venv/bin/python bench/bare_baseline.py --data DIR --cpu-seconds 120
    .venv/bin/python bench/bare_baseline.py --data DIR --cpu-seconds 120 --seed 7 --split study

What it trains (nothing of the harness but reading the dataset and its split, and the metric definitions):

* a classifier: timm ``mobilenetv3_small_050`` (no pretrained weights), 3 classes, 128 px, class-weighted
  cross-entropy, constant AdamW 1e-3, batch 16;
* a segmenter: smp U-Net++ with the timm ``mobilenetv3_small_050`` encoder, 128 px, binary, Dice + BCE,
  constant AdamW 1e-3, batch 8, trained on the lesion (Benign/Malignant) training images;
* both with horizontal flips and a small affine (+-10 deg, +-10 % scale, +-6 % shift), inputs scaled to [0, 1]
  and standardised with the training set's mean and std.

Each model trains for its share of ``--cpu-seconds`` of process CPU time (one thread; ``--seg-share`` of it
to the segmenter), whole epochs while the budget lasts, and keeps its final weights (no selection on
validation). It is then evaluated end to end like pipeline A on the split's validation and test images:
predicted Normal -> empty mask, otherwise the segmenter's mask (probability > 0.5, upsampled to the original
size); the per-image table goes through ``harness.metrics.run_metrics`` (balanced accuracy, lesion Dice with a
missed lesion counting 0, ...), so the numbers are defined exactly as a harness run's. The segmenter alone
(ground-truth lesion images) is reported too (``seg_dice``).

The split is the harness's (``splits/<name>.json``, created with ``--val``/``--test``/``--split-seed`` when
missing), so a bare run and a preset run on the same data see the same images. Writes
``bench/results/bare_baseline.json``; ``bench/bench_presets.py`` imports :func:`run_baseline`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CLASSES = 3
NORMAL = 2


@dataclass(frozen=True)
class Subset:
    ids: list[str]
    images: np.ndarray  # N, S, S uint8 at the training size
    masks: np.ndarray  # N, S, S bool at the training size
    labels: np.ndarray
    originals: list[np.ndarray]  # ground-truth masks at the original size
    patients: list[str]


def load_split(data: Path, split: str, val: float, test: float, split_seed: int, size: int) -> dict[str, Subset]:
    """The split's train/val/test images resized to ``size`` (area for images, nearest for masks)."""
    from harness.data.check import load_index
    from harness.data.io import read_image, read_mask
    from harness.data.splits import get_or_create_split

    index = load_index(data, check=False)
    sp = get_or_create_split(index, split, val, test, split_seed)
    by_id = index.by_id()
    out = {}
    for name, ids in (("train", sp.train), ("val", sp.val), ("test", sp.test)):
        imgs, masks, labels, originals, patients = [], [], [], [], []
        for i in ids:
            rec = by_id[i]
            img = read_image(index.image_file(rec))
            mfile = index.mask_file(rec)
            gt = read_mask(mfile) if mfile is not None else np.zeros(img.shape, bool)
            imgs.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(gt.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0)
            labels.append(rec.label)
            originals.append(gt)
            patients.append(rec.patient_id)
        out[name] = Subset(list(ids), np.stack(imgs), np.stack(masks), np.array(labels), originals, patients)
    return out


def augment(x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random horizontal flip and small affine of a batch (N, 1, S, S), the same for the masks."""
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 0.12  # +-6 % of the side in [-1, 1] coordinates
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    sx = torch.where(flip, -1.0, 1.0)
    rows = [torch.stack([cos * sx, -sin, shift[:, 0]], 1), torch.stack([sin * sx, cos, shift[:, 1]], 1)]
    theta = torch.stack(rows, 1)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if m is not None:
        m = nn.functional.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, m


def _inputs(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return torch.from_numpy((images.astype(np.float32) / 255.0 - mean) / std)[:, None]


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, batch: int, seconds: float, seed: int,
           dense: bool) -> dict[str, Any]:
    """Whole epochs of constant-LR AdamW while the CPU budget lasts; returns epochs run and CPU seconds."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    t0, epochs = time.process_time(), 0
    while time.process_time() - t0 < seconds:
        model.train()
        order = torch.randperm(len(x), generator=g)
        for k in range(0, len(x) - (len(x) % batch if len(x) > batch else 0), batch):
            idx = order[k : k + batch]
            xb, mb = augment(x[idx], y[idx].float()[:, None] if dense else None, g)
            out = model(xb)
            loss = loss_fn(out, mb if dense else y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epochs += 1
    return {"epochs": epochs, "cpu_s": time.process_time() - t0}


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[k : k + batch]) for k in range(0, len(x), batch)]) if len(x) else torch.empty(0)


def run_baseline(data: Path, cpu_seconds: float, *, seed: int = 42, split: str = "study", val: float = 0.2,
                 test: float = 0.2, split_seed: int = 42, size: int = 128, seg_share: float = 0.5) -> dict[str, Any]:
    """Train both models for ``cpu_seconds`` in all and score them on val and test (see the module docstring)."""
    import pandas as pd
    import segmentation_models_pytorch as smp
    import timm

    from harness.metrics import run_metrics
    from harness.metrics.segmentation import per_image

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    sets = load_split(data, split, val, test, split_seed, size)
    tr = sets["train"]
    mean, std = float(tr.images.mean() / 255), float(tr.images.std() / 255 + 1e-6)
    x = _inputs(tr.images, mean, std)
    counts = np.bincount(tr.labels, minlength=CLASSES).astype(float)
    weights = torch.tensor(np.where(counts > 0, counts.sum() / (CLASSES * np.maximum(counts, 1)), 0.0),
                           dtype=torch.float32)
    clf = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=CLASSES, in_chans=1)
    clf_run = _train(clf, x, torch.from_numpy(tr.labels), nn.CrossEntropyLoss(weight=weights), 16,
                     cpu_seconds * (1 - seg_share), seed, dense=False)
    lesion = tr.labels != NORMAL
    seg = smp.UnetPlusPlus(encoder_name="tu-mobilenetv3_small_050", encoder_weights=None, in_channels=1, classes=1)
    dice, bce = smp.losses.DiceLoss("binary"), nn.BCEWithLogitsLoss()
    seg_run = _train(seg, x[torch.from_numpy(lesion)], torch.from_numpy(tr.masks[lesion]),
                     lambda out, m: dice(out, m) + bce(out, m), 8, cpu_seconds * seg_share, seed + 1, dense=True)
    result: dict[str, Any] = {"seed": seed, "cpu_seconds_budget": cpu_seconds, "classifier": clf_run,
                              "segmenter": seg_run, "cpu_s": clf_run["cpu_s"] + seg_run["cpu_s"]}
    for name in ("val", "test"):
        sub = sets[name]
        if not sub.ids:
            continue
        xs = _inputs(sub.images, mean, std)
        probs = torch.softmax(_predict(clf, xs), 1).numpy()
        maps = torch.sigmoid(_predict(seg, xs))[:, 0].numpy()
        rows, seg_only = [], []
        for k, image_id in enumerate(sub.ids):
            gt = sub.originals[k]
            prob = cv2.resize(maps[k], (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
            mask = prob > 0.5
            if sub.labels[k] != NORMAL:
                seg_only.append(per_image(mask, gt)["dice"])
            pred_label = int(probs[k].argmax())
            final = mask if pred_label != NORMAL else np.zeros_like(gt)
            rows.append({"image_id": image_id, "label": int(sub.labels[k]), "pred_label": pred_label,
                         "prob_benign": probs[k, 0], "prob_malignant": probs[k, 1], "prob_normal": probs[k, 2],
                         **per_image(final, gt), "gt_pixels": int(gt.sum()), "pred_pixels": int(final.sum()),
                         "patient_id": sub.patients[k]})
        metrics = run_metrics(pd.DataFrame(rows))
        result[name] = {"balanced_accuracy": metrics["balanced_accuracy"], "dice_mean": metrics["dice_mean"],
                        "seg_dice": float(np.mean(seg_only)) if seg_only else float("nan")}
    return result


def main() -> None:
    from common import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="dataset directory (default: a synthetic set of 300 images, seed 1)")
    ap.add_argument("--cpu-seconds", type=float, default=60.0, help="CPU time for both models (default: 60)")
    ap.add_argument("--seg-share", type=float, default=0.5, help="share of it for the segmenter (default: 0.5)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--split", default="study", help="split name (default: study, the quickstart's)")
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--test", type=float, default=0.2)
    ap.add_argument("--split-seed", type=int, default=42)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    t0 = time.time()
    data = args.data
    if data is None:
        import tempfile

        from harness.data.synth import synthesize

        data = Path(tempfile.gettempdir()) / "harness-bare-synth-300-s1"
        if not (data / "training_metadata.xlsx").exists():
            synthesize(data, n_images=300, size=256, seed=1)
    res = run_baseline(data, args.cpu_seconds, seed=args.seed, split=args.split, val=args.val, test=args.test,
                       split_seed=args.split_seed, size=args.size, seg_share=args.seg_share)
    summary = {f"bare_{sub}_{k}": float(v) for sub in ("val", "test") if sub in res for k, v in res[sub].items()}
    summary["bare_cpu_s"] = float(res["cpu_s"])
    write_result("bare_baseline", summary=summary, raw={"data": str(data), **res}, started=t0)


if __name__ == "__main__":
    main()
