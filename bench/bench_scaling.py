"""Scaling: seconds of a whole trial against image count and resolution, and the cost model of `harness study plan`.

    .venv/bin/python bench/bench_scaling.py          # defaults: <= 3 min on 2 quiet cores
    .venv/bin/python bench/bench_scaling.py --epochs 3 --res-images 300

**Trials.** ``run_trial`` of the tiny-a preset (classifier test_resnet on all images, then the binary
U-Net++ on the lesion images; evaluation on the validation subset with the preset's 3-view TTA), one
thread, ``--epochs`` epochs per stage (no early stopping), the study split 60/20/20, fresh stage store,
caches warmed first (as a study's driver does) and one untimed warm-up trial (imports, lazy inits):

* **image count**: 100, 300 and 1000 synthetic images (written at 128 px), both stages at 128 px,
  every training image every epoch;
* **resolution**: 100 images, both stages at 128, 256 and 320 px (the stage ``image_size``), each
  epoch capped at ``--res-steps`` batches (``optim.max_steps_per_epoch``) so that the 320 px trial fits
  the time slot; validation and evaluation run on every validation image.

Every trial is measured whole (training + evaluation, wall and CPU seconds of the process). A callback
at every epoch end reads the process's CPU clock; an epoch's seconds are the difference between two
epoch ends of a stage (so the steady second epoch; the first epoch's warm-up lands in the trial's
fixed part), split into training and validation with the epoch record's own proportions.

**Fits** (least squares, on CPU seconds: with one torch thread and no loader workers they are what a
quiet machine's wall clock shows, and they barely move when other jobs load the machine; wall-clock
fits are in ``raw`` with the load factor wall/CPU):

* ``scaling_s_per_image_epoch``: slope of an epoch's seconds (all stages, training + validation) against
  the dataset's image count, image-count trials, 128 px (least-squares line with intercept);
* ``scaling_resolution_exponent``: power law ``epoch seconds = c * (px / 128) ** k`` (log-log line)
  over the resolution trials; ``scaling_s_per_megapixel`` the alternative linear model (seconds per
  processed image = b0 + b1 * megapixels of the input); both models' relative residuals are in
  ``raw.fits``, and the one with the smaller residuals is named in ``raw.fits.resolution_model``;
* the **cost model** of :mod:`harness.tune.plan` (:func:`harness.tune.plan.trial_seconds`), per stage
  kind: epoch constant and seconds per training / validation image at 128 px (lines over the
  image-count trials; a negative intercept is refitted through the origin), and the exponent of
  ``epoch = constant + per-image seconds * (px / 128) ** k`` (least squares over a grid of k, the
  resolution trials); per trial: fixed seconds and evaluation seconds per image (a line, all trials,
  over what is left of a trial after its epochs and the fitted inference through its stages; those
  residuals are in seconds, as what is left is small);
* ``scaling_plan_max_rel_error``: the fitted cost model's prediction of every measured trial's CPU
  seconds, largest relative error; ``raw.committed_max_rel_error`` the same for the coefficients
  in ``harness/tune/plan.py`` (refit them when it drifts: paste the printed lines, see
  :data:`harness.tune.plan.COST`). ``--refit RESULT_JSON`` fits an earlier measurement again.

The evaluation of a trial is modelled coarsely (pipeline A segments only the images its classifier calls
lesions, which the model cannot know): it is a small part of a tiny trial. The data are written at 128 px
(the stage input size, not the file's, sets the training cost; real images of ~500 px cost more in
evaluation, which computes metrics at the original size).
The joint kind (pipeline C) is not measured: the plan uses the segmenter's coefficients for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

PRESET = "tiny-a"
KIND_OF = {"classifier3": "classifier", "segmenter_binary": "segmenter"}


@dataclass
class Clock:
    """Epoch callback: CPU and wall clock at every epoch end, with the epoch record's own seconds."""

    marks: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, stage: str, record: dict[str, Any]) -> None:
        self.marks.append({"stage": stage, "epoch": int(record["epoch"]), "cpu": time.process_time(),
                           "wall": time.perf_counter(), "seconds": float(record["seconds"]),
                           "train_seconds": float(record["train_seconds"])})

    def steady(self, stage: str) -> dict[str, float]:
        """CPU seconds of the stage's last epoch (training, validation) and the wall seconds it recorded."""
        ms = [m for m in self.marks if m["stage"] == stage]
        last, before = ms[-1], ms[-2]
        cpu = last["cpu"] - before["cpu"]
        share = last["train_seconds"] / last["seconds"] if last["seconds"] > 0 else 1.0
        return {"cpu": cpu, "train_cpu": cpu * share, "val_cpu": cpu * (1 - share), "wall": last["seconds"],
                "train_wall": last["train_seconds"]}


def lstsq_line(x: list[float], y: list[float], nonneg: bool = False) -> dict[str, Any]:
    """y = intercept + slope * x, least squares, with the residuals (seconds and relative). ``nonneg``: a
    negative intercept (a fixed cost below zero) is refitted as a line through the origin."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    (b0, b1), *_ = np.linalg.lstsq(np.column_stack([np.ones(len(xs)), xs]), ys, rcond=None)
    if nonneg and b0 < 0:
        b0, b1 = 0.0, float(xs @ ys / (xs @ xs))
    res = ys - (b0 + b1 * xs)
    rel = [round(float(r), 4) for r in res / ys]
    return {"intercept": float(b0), "slope": float(b1), "residuals": [round(float(r), 4) for r in res],
            "rel_residuals": rel, "max_abs_rel": max(map(abs, rel))}


def power_law(size: list[int], y: list[float], ref: int = 128) -> dict[str, Any]:
    """y = c * (size / ref) ** k, least squares on logs, with the relative residuals."""
    line = lstsq_line([math.log(s / ref) for s in size], [math.log(v) for v in y])
    pred = [math.exp(line["intercept"]) * (s / ref) ** line["slope"] for s in size]
    rel = [round((v - p) / v, 4) for v, p in zip(y, pred, strict=True)]
    return {"c": math.exp(line["intercept"]), "exponent": line["slope"], "rel_residuals": rel,
            "max_abs_rel": max(map(abs, rel))}


def exponent_fit(sizes: list[int], y: list[float], c: float, per_ref: list[float], ref: int = 128) -> dict[str, Any]:
    """k minimising sum (y - c - per_ref * (size / ref) ** k)**2 over a grid of k in [0, 3]: ``c`` the epoch's
    constant and ``per_ref`` its per-image seconds at ``ref`` px (both from the image-count fit), with the
    relative residuals."""
    ks = np.linspace(0.0, 3.0, 3001)
    scale = (np.asarray(sizes, float)[None, :] / ref) ** ks[:, None]
    pred = c + np.asarray(per_ref, float)[None, :] * scale
    k = int(np.argmin(((np.asarray(y, float)[None, :] - pred) ** 2).sum(1)))
    rel = [round(float(r), 4) for r in (np.asarray(y) - pred[k]) / np.asarray(y)]
    return {"exponent": float(ks[k]), "rel_residuals": rel, "max_abs_rel": max(map(abs, rel))}


def stage_images(root: Path, split_name: str, batch: int, max_steps: int | None) -> dict[str, dict[str, int]]:
    """Per stage: training images an epoch sees and validation images (tiny-a: classifier on all, segmenter on
    the lesion images)."""
    from harness import NORMAL
    from harness.data.check import load_index
    from harness.data.splits import load_split
    from harness.tune.plan import images_per_epoch

    index = load_index(root, None, check=False)
    split = load_split(root, split_name, index)
    label = {r.image_id: r.label for r in index.records}
    lesion = lambda ids: [i for i in ids if label[i] != NORMAL]  # noqa: E731
    return {"classifier3": {"train": images_per_epoch(len(split.train), batch, max_steps), "val": len(split.val)},
            "segmenter_binary": {"train": images_per_epoch(len(lesion(split.train)), batch, max_steps),
                                 "val": len(lesion(split.val))},
            "eval": {"val": len(split.val)}}


def run_one(root: Path, work: Path, n: int, size: int, epochs: int, max_steps: int | None, tag: str) -> dict[str, Any]:
    from harness.config import load_run_config
    from harness.pipelines.run import run_trial

    config = load_run_config(PRESET, {
        "classifier.image_size": size, "segmenter.image_size": size, "classifier.optim.epochs": epochs,
        "segmenter.optim.epochs": epochs, "classifier.optim.patience": epochs + 1,
        "segmenter.optim.patience": epochs + 1, "classifier.optim.max_steps_per_epoch": max_steps,
        "segmenter.optim.max_steps_per_epoch": max_steps, "runtime.threads": 1, "runtime.progress": "off",
        "data.dir": str(root), "data.split": "scaling", "data.val_fraction": 0.2, "data.test_fraction": 0.2})
    clock = Clock()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_trial(config, work / f"run-{tag}", data_dir=root, store_root=work / f"store-{tag}", subsets=("val",),
                       callbacks=[clock], check_data=False, progress=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    images = stage_images(root, "scaling", config.classifier.optim.batch_size, max_steps)
    stages = {s: {**clock.steady(s), **images[s]} for s in KIND_OF}
    views = len(config.eval.tta_views) if config.eval.tta else 1
    return {"tag": tag, "images": n, "size": size, "epochs": epochs, "max_steps": max_steps, "cpu": round(cpu, 3),
            "wall": round(wall, 3), "inner_wall": round(result.seconds, 3), "stages": stages,
            "n_eval": images["eval"]["val"], "views": views}


def prepare(root: Path, n: int, sizes: list[int]) -> None:
    """Synthesize, create the split, hash and warm the decoded-image caches (as a study driver does)."""
    from harness.config import load_run_config
    from harness.data.cache import content_hash, load_cache
    from harness.data.synth import synthesize
    from harness.pipelines.context import load_dataset

    synthesize(root, n_images=n, size=128, seed=0)
    config = load_run_config(PRESET, {"data.dir": str(root), "data.split": "scaling", "data.val_fraction": 0.2,
                                      "data.test_fraction": 0.2})
    _, index, _ = load_dataset(config, root, check_data=True)
    content_hash(index, None)
    for s in sizes:
        load_cache(index, s, None)


def fit_cost_model(trials: list[dict[str, Any]], count_tags: list[str], res_tags: list[str]) -> dict[str, Any]:
    """Coefficients of harness.tune.plan.CostModel from the measured trials (CPU seconds)."""
    counts = [t for t in trials if t["tag"] in count_tags]
    res = [t for t in trials if t["tag"] in res_tags]
    kinds: dict[str, dict[str, float]] = {}
    detail: dict[str, Any] = {}
    for stage, kind in KIND_OF.items():
        st = [t["stages"][stage] for t in counts]
        tr = lstsq_line([s["train"] for s in st], [s["train_cpu"] for s in st], nonneg=True)
        va = lstsq_line([s["val"] for s in st], [s["val_cpu"] for s in st], nonneg=True)
        epoch_s = tr["intercept"] + va["intercept"]
        rs = [t["stages"][stage] for t in res]
        ex = exponent_fit([t["size"] for t in res], [s["cpu"] for s in rs], epoch_s,
                          [tr["slope"] * s["train"] + va["slope"] * s["val"] for s in rs])
        kinds[kind] = {"epoch_s": epoch_s, "train_s_per_image": tr["slope"], "val_s_per_image": va["slope"],
                       "exponent": ex["exponent"]}
        detail[kind] = {"train_line": tr, "val_line": va, "epoch_exponent": ex}
    from harness.tune.plan import CostModel, StageCost, evaluation_seconds

    costs = {k: StageCost(**v) for k, v in kinds.items()}
    bare = CostModel(kinds=costs, models={}, trial_s=0.0, eval_s_per_image=0.0, fitted="")
    rest, n_eval = [], []
    for t in trials:
        work = _work(t, costs)
        trained = sum(t["epochs"] * t["stages"][s]["cpu"] for s in KIND_OF)
        rest.append(t["cpu"] - trained - evaluation_seconds(bare, work, 0, t["views"]))
        n_eval.append(t["n_eval"])
    ev = lstsq_line(n_eval, rest, nonneg=True)
    detail["eval_line"] = ev  # residuals in seconds: what is left of a trial after training and inference is small
    return {"kinds": kinds, "trial_s": ev["intercept"], "eval_s_per_image": max(0.0, ev["slope"]),
            "detail": detail}


def _work(t: dict[str, Any], costs: dict[str, Any]) -> list[Any]:
    from harness.tune.plan import StageWork

    return [StageWork(costs[kind], t["epochs"], t["stages"][s]["train"], t["stages"][s]["val"], t["size"],
                      t["stages"][s]["val"]) for s, kind in KIND_OF.items()]


def predict(trials: list[dict[str, Any]], cost: Any) -> list[dict[str, float]]:
    from harness.tune.plan import trial_seconds

    out = []
    for t in trials:
        p = trial_seconds(cost, _work(t, dict(cost.kinds)), t["n_eval"], t["views"])
        out.append({"tag": t["tag"], "measured_cpu": t["cpu"], "predicted": round(p, 3),
                    "rel_error": round((p - t["cpu"]) / t["cpu"], 4)})
    return out


def cost_block(fit: dict[str, Any], fitted: str) -> str:
    """The lines of harness/tune/plan.py that hold the fitted coefficients (paste them over the old ones)."""
    def sc(k: str) -> str:
        c = fit["kinds"][k]
        return (f"StageCost(epoch_s={c['epoch_s']:.3g}, train_s_per_image={c['train_s_per_image']:.3g}, "
                f"val_s_per_image={c['val_s_per_image']:.3g}, exponent={c['exponent']:.3g})")
    return (f"_CLASSIFIER_COST = {sc('classifier')}\n_SEGMENTER_COST = {sc('segmenter')}\n"
            f"_TRIAL_S, _EVAL_S_PER_IMAGE = {fit['trial_s']:.3g}, {fit['eval_s_per_image']:.3g}\n"
            f"_FITTED = {json.dumps(fitted)}")


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """Prepare the datasets, run the warm-up and the measured trials; (trials, seconds spent preparing)."""
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        datasets = {}
        for n in sorted({*args.counts, args.res_images}):
            datasets[n] = work / f"data{n}"
            prepare(datasets[n], n, sorted({128, *(args.sizes if n == args.res_images else [])}))
        prep_s = time.perf_counter() - t0
        run_one(datasets[min(datasets)], work, min(datasets), 128, 2, 1, "warmup")  # imports, lazy inits
        plan = [(n, 128, None, f"n{n}") for n in args.counts] + [(args.res_images, s, args.res_steps, f"px{s}")
                                                                 for s in args.sizes]
        trials = []
        for n, size, steps, tag in plan:
            t = run_one(datasets[n], work, n, size, args.epochs, steps, tag)
            trials.append(t)
            print(f"{tag}: {n} images at {size} px, {args.epochs} epochs{f', {steps} batches' if steps else ''}: "
                  f"{t['cpu']:.1f} s CPU, {t['wall']:.1f} s wall", flush=True)
        if args.out is not None:
            (work / "trials.json").write_text(json.dumps({"raw": {"trials": trials, "prepare_seconds": prep_s}}))
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)
    return trials, prep_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 320])
    ap.add_argument("--epochs", type=int, default=2, help="epochs per stage (>= 2: the last one is the steady epoch)")
    ap.add_argument("--res-images", type=int, default=100, help="dataset size of the resolution trials")
    ap.add_argument("--res-steps", type=int, default=2, help="batches per epoch in the resolution trials")
    ap.add_argument("--out", type=Path, help="work directory, kept (default: a temporary one, removed)")
    ap.add_argument("--refit", type=Path, metavar="RESULT_JSON",
                    help="fit the trials of an earlier bench_scaling.json again (no measuring)")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    t_start = time.time()
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    measured = time.strftime("%Y-%m-%d")
    if args.refit:
        doc = json.loads(args.refit.read_text())
        earlier, measured = doc["raw"], str(doc.get("started", ""))[:10] or measured
        trials, prep_s = earlier["trials"], earlier.get("prepare_seconds", 0.0)
        args.counts = sorted({t["images"] for t in trials if t["max_steps"] is None})
        args.sizes = sorted({t["size"] for t in trials if t["max_steps"] is not None})
        args.epochs = trials[0]["epochs"]
    else:
        trials, prep_s = measure(args)
    count_tags, res_tags = [f"n{n}" for n in args.counts], [f"px{s}" for s in args.sizes]
    counts = [t for t in trials if t["tag"] in count_tags]
    res = [t for t in trials if t["tag"] in res_tags]
    epoch = lambda t, key="cpu": sum(t["stages"][s][key] for s in KIND_OF)  # noqa: E731
    per_image = lambda t: epoch(t) / sum(t["stages"][s]["train"] + t["stages"][s]["val"] for s in KIND_OF)  # noqa: E731
    by_count = lstsq_line([t["images"] for t in counts], [epoch(t) for t in counts])
    by_count_wall = lstsq_line([t["images"] for t in counts], [epoch(t, "wall") for t in counts])
    power = power_law([t["size"] for t in res], [epoch(t) for t in res])
    mpx = lstsq_line([t["size"] ** 2 / 1e6 for t in res], [per_image(t) for t in res])
    fit = fit_cost_model(trials, count_tags, res_tags)

    from harness.tune.plan import COST, CostModel, StageCost

    fitted_desc = (f"bench/bench_scaling.py, {PRESET} trials, 1 thread, CPU seconds, {os.cpu_count()}-core "
                   f"{_cpu_name()}, {measured}")
    fitted = CostModel(kinds={**{k: StageCost(**v) for k, v in fit["kinds"].items()},
                              "joint": StageCost(**fit["kinds"]["segmenter"])},
                       models=COST.models, trial_s=fit["trial_s"], eval_s_per_image=fit["eval_s_per_image"],
                       fitted=fitted_desc)
    checks, committed = predict(trials, fitted), predict(trials, COST)
    plan_err = max(abs(c["rel_error"]) for c in checks)
    block = cost_block(fit, fitted_desc)
    print("\ncost model for harness/tune/plan.py (paste over its _CLASSIFIER_COST ... _FITTED lines):\n" + block
          + "\n", flush=True)
    summary = {"scaling_s_per_image_epoch": round(by_count["slope"], 6),
               "scaling_resolution_exponent": round(power["exponent"], 3),
               "scaling_s_per_megapixel": round(mpx["slope"], 4),
               "scaling_trial_fixed_s": round(fit["trial_s"], 3),
               "scaling_eval_s_per_image": round(fit["eval_s_per_image"], 5),
               "scaling_plan_max_rel_error": round(plan_err, 4)}
    raw = {"preset": PRESET, "settings": {k: v for k, v in vars(args).items() if k != "out"},
           "prepare_seconds": round(prep_s, 1), "loadavg_at_start": load, "loadavg_at_end": os.getloadavg(),
           "load_factor_wall_over_cpu": round(sum(t["wall"] for t in trials) / sum(t["cpu"] for t in trials), 3),
           "trials": trials,
           "fits": {"epoch_vs_images_cpu": by_count, "epoch_vs_images_wall": by_count_wall,
                    "epoch_vs_px_power_law": power, "per_image_vs_megapixels": mpx,
                    "resolution_model": ("power law" if power["max_abs_rel"] <= mpx["max_abs_rel"]
                                         else "linear in pixels")},
           "cost_model": {**fit, "block": block}, "plan_check": checks, "committed_check": committed,
           "committed_max_rel_error": max(abs(c["rel_error"]) for c in committed)}
    write_result("bench_scaling", summary=summary, raw=raw, started=t_start)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU"


if __name__ == "__main__":
    raise SystemExit(main())
