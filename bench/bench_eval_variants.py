"""What evaluation-only variants of a trained configuration cost: a threshold / TTA / rho sweep should
cost about what one training costs.

    .venv/bin/python bench/bench_eval_variants.py                  # tiny-b, 180 synthetic images at 192 px
    .venv/bin/python bench/bench_eval_variants.py --images 300 --set classifier.optim.epochs=20
    .venv/bin/python bench/bench_eval_variants.py --paper          # also paper-b (B7 models), cache miss vs hit

One tiny-b configuration is trained and evaluated from an empty stage store with ``run_trial`` (the
"config alone", T0), then 8 evaluation-only variants of it (mask threshold, TTA off, rho, lesion pixel
threshold) run with ``run_trial`` on the same store, one after the other, as a study's trials do:
their stages come from the store and their stages' outputs from the output cache
(harness.engine.outputs), except where a variant changes a stage's input (rho and the mask or pixel
thresholds change pipeline B's ROI crops, so its ROI classifier runs again on the new crops).

    eval_only_variants_ratio = (T0 + sum of the 8 variants' seconds) / T0        (goal <= 1.2)

T0 is measured once and used on both sides: two trainings of the same configuration differ by more
than the variants cost. Then every variant runs again with the output cache emptied before it
(``uncached``), which gives the same ratio without the cache and checks that cached and uncached runs
write identical predictions and metrics. Each variant's seconds are split into: stages (load from
the store), inference (``stage_outputs``: forward passes or cache reads), post-processing (the rest
of the pipeline's ``infer``: thresholds, upsampling, ROI crops), evaluate (per-image metrics, mask PNGs)
and other (config, dataset index, manifest, predictions and metrics files, publishing the run).
All runs use ``runtime.threads=1``.

``--paper`` adds paper-b (U-Net++/EfficientNet-B7 at 320 px, EfficientNet-B7 at 300 px, not pretrained,
one training step per stage) on ``--paper-images`` images: one variant with its outputs cache emptied
(miss) and one with it filled (hit), to show what inference costs at the paper's model size.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import logging
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import goal, write_result  # noqa: E402

NAME = "bench_eval_variants"
VARIANTS: dict[str, list[str]] = {
    "mask_threshold=0.3": ["eval.mask_threshold=0.3"],
    "mask_threshold=0.7": ["eval.mask_threshold=0.7"],
    "tta=off": ["eval.tta=false"],
    "tta=off,mask_threshold=0.3": ["eval.tta=false", "eval.mask_threshold=0.3"],
    "rho=0.1": ["roi.margin=0.1"],
    "rho=0.4": ["roi.margin=0.4"],
    "lesion_min_pixels=2": ["roi.lesion_min_pixels=2"],
    "lesion_min_pixels=20": ["roi.lesion_min_pixels=20"],
}
PHASES = ("stages", "inference", "postprocess", "evaluate", "other")
COMPARED = ("predictions.csv", "metrics.json", "metrics_test.json")


class Phases:
    """Seconds spent in each phase of ``run_trial``, by wrapping the functions that make a phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.by_stage: dict[str, float] = defaultdict(float)  # inference seconds of each stage
        self.inferring = False

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if phase == "inference" and not self.inferring:  # B's training crops: part of obtaining the stages
                return fn(*args, **kwargs)
            self.inferring = phase == "infer" or self.inferring
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0
                if phase == "inference":
                    self.by_stage[args[1].name] += time.perf_counter() - t0
                self.inferring = self.inferring and phase != "infer"
        return timed

    @contextlib.contextmanager
    def patched(self, pipeline: str) -> Iterator[None]:
        from harness.pipelines import c, run, stages
        from harness.pipelines.registry import get_pipeline

        cls = type(get_pipeline(pipeline).create())
        originals = [(stages, "stage_outputs"), (c, "stage_outputs"), (run, "evaluate"), (cls, "train"),
                     (cls, "infer")]
        saved = [(obj, name, getattr(obj, name)) for obj, name in originals]
        phase = {"stage_outputs": "inference", "evaluate": "evaluate", "train": "stages", "infer": "infer"}
        try:
            for obj, name, fn in saved:
                setattr(obj, name, self.wrap(phase[name], fn))
            yield
        finally:
            for obj, name, fn in saved:
                setattr(obj, name, fn)

    def split(self, total: float) -> dict[str, float]:
        s = self.seconds
        out = {"stages": s["stages"], "inference": s["inference"], "postprocess": s["infer"] - s["inference"],
               "evaluate": s["evaluate"]}
        out["other"] = total - sum(out.values())
        out.update({f"inference:{k}": v for k, v in self.by_stage.items()})
        return {k: round(v, 4) for k, v in out.items()}


def fmt(phases: dict[str, float]) -> str:
    """One line: seconds per phase, the inference split by stage in brackets."""
    stages = ", ".join(f"{k.split(':', 1)[1]} {v:.2f}" for k, v in phases.items() if k.startswith("inference:"))
    return " | ".join(f"{k} {phases[k]:.2f}" + (f" ({stages})" if k == "inference" and stages else "")
                      for k in PHASES)


def run_once(preset: str, overrides: list[str], out: Path, data: Path, store: Path, check: bool) -> dict[str, Any]:
    """One ``run_trial``: seconds, phase split, stages trained."""
    from harness.config import load_run_config
    from harness.pipelines.run import run_trial

    config = load_run_config(preset, overrides)
    phases = Phases()
    with phases.patched(config.pipeline):
        t0 = time.perf_counter()
        result = run_trial(config, out, data_dir=data, store_root=store, check_data=check, progress=False)
        seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 4), "phases": phases.split(seconds), "trained": result.trained_stages,
            "balanced_accuracy": result.metrics.get("balanced_accuracy"), "dice_mean": result.metrics.get("dice_mean")}


def empty_output_caches(store: Path) -> None:
    from harness.engine.outputs import OUTPUTS

    for d in store.glob(f"*/{OUTPUTS}"):
        shutil.rmtree(d)


def same_outputs(a: Path, b: Path) -> bool:
    """Both runs wrote byte-identical predictions, metrics and predicted masks."""
    for name in COMPARED:
        if (a / name).exists() != (b / name).exists():
            return False
        if (a / name).exists() and not filecmp.cmp(a / name, b / name, shallow=False):
            return False
    masks = sorted(p.name for p in (a / "pred_masks").glob("*.png"))
    if masks != sorted(p.name for p in (b / "pred_masks").glob("*.png")):
        return False
    return all(filecmp.cmp(a / "pred_masks" / m, b / "pred_masks" / m, shallow=False) for m in masks)


def tiny_case(args: argparse.Namespace, work: Path, data: Path) -> dict[str, Any]:
    base = ["runtime.threads=1", f"data.test_fraction={args.test_fraction}", *args.overrides]
    store = work / "store"
    print(f"training {args.preset} from an empty store ...", flush=True)
    alone = run_once(args.preset, base, work / "base", data, store, check=True)
    print(f"  config alone: {alone['seconds']:.1f} s (trained {', '.join(alone['trained'])})", flush=True)
    cached: dict[str, dict[str, Any]] = {}
    for name, extra in VARIANTS.items():
        cached[name] = run_once(args.preset, base + extra, work / "cached" / name, data, store, check=False)
        print(f"  variant {name:<28} cached   {cached[name]['seconds']:6.2f} s  {fmt(cached[name]['phases'])}",
              flush=True)
    uncached: dict[str, dict[str, Any]] = {}
    identical: dict[str, bool] = {}
    for name, extra in VARIANTS.items():
        empty_output_caches(store)
        uncached[name] = run_once(args.preset, base + extra, work / "uncached" / name, data, store, check=False)
        identical[name] = same_outputs(work / "cached" / name, work / "uncached" / name)
        print(f"  variant {name:<28} uncached {uncached[name]['seconds']:6.2f} s  {fmt(uncached[name]['phases'])}  "
              f"identical={identical[name]}", flush=True)
    t0 = alone["seconds"]
    sum_cached = sum(v["seconds"] for v in cached.values())
    sum_uncached = sum(v["seconds"] for v in uncached.values())
    example = "mask_threshold=0.3"
    return {
        "summary": {
            "eval_only_variants_ratio": round((t0 + sum_cached) / t0, 4),
            "eval_only_variants_ratio_uncached": round((t0 + sum_uncached) / t0, 4),
            "eval_variant_seconds_median": round(sorted(v["seconds"] for v in cached.values())[len(cached) // 2], 3),
            "eval_variants_identical": float(all(identical.values())),
        },
        "raw": {"config_alone": alone, "cached": cached, "uncached": uncached, "identical": identical,
                "split_of_one_variant": {"variant": example, "cached": cached[example]["phases"],
                                         "uncached": uncached[example]["phases"]},
                "overrides": base, "preset": args.preset},
    }


def paper_case(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """paper-b with one training step per stage on a handful of images: inference miss vs hit."""
    from harness.data.synth import synthesize

    data = work / "paper-data"
    synthesize(data, n_images=args.paper_images, size=320, seed=1)
    base = ["runtime.threads=1", "data.test_fraction=0.25", "data.val_fraction=0.25",
            "classifier.pretrained=false", "segmenter.pretrained=false", "eval.batch_size=4"]
    for section in ("classifier", "segmenter"):
        base += [f"{section}.optim.epochs=1", f"{section}.optim.max_steps_per_epoch=1", f"{section}.optim.batch_size=2"]
    store = work / "paper-store"
    print("paper-b: training 1 step per stage ...", flush=True)
    trained = run_once("paper-b", base, work / "paper-base", data, store, check=True)
    print(f"  paper-b trained + evaluated: {trained['seconds']:.1f} s  {fmt(trained['phases'])}", flush=True)
    empty_output_caches(store)
    variant = base + ["eval.mask_threshold=0.4"]
    miss = run_once("paper-b", variant, work / "paper-miss", data, store, check=False)
    print(f"  paper-b variant, cache miss: {miss['seconds']:.1f} s  {fmt(miss['phases'])}", flush=True)
    hit = run_once("paper-b", variant, work / "paper-hit", data, store, check=False)
    print(f"  paper-b variant, cache hit:  {hit['seconds']:.1f} s  {fmt(hit['phases'])}", flush=True)
    return {"summary": {"paper_b_variant_seconds_miss": miss["seconds"], "paper_b_variant_seconds_hit": hit["seconds"],
                        "paper_b_inference_seconds_miss": miss["phases"]["inference"],
                        "paper_b_inference_seconds_hit": hit["phases"]["inference"]},
            "raw": {"paper_trained": trained, "paper_miss": miss, "paper_hit": hit, "paper_images": args.paper_images,
                    "paper_overrides": base, "paper_identical": same_outputs(work / "paper-miss", work / "paper-hit")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny-b", help="the configuration whose variants are run (default tiny-b)")
    ap.add_argument("--images", type=int, default=180, help="synthetic images (default 180)")
    ap.add_argument("--image-size", type=int, default=192, help="side of the synthetic images (default 192)")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="test subset, evaluated with val (default 0.2)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, repeatable")
    ap.add_argument("--paper", action="store_true", help="also time paper-b (B7 models) inference miss vs hit")
    ap.add_argument("--paper-images", type=int, default=16, help="images of the paper-b case (default 16)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temp dir, removed)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from harness.data.synth import synthesize

    torch.set_num_threads(1)
    started = time.time()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_eval_variants_"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "data"
        synthesize(data, n_images=args.images, size=args.image_size, seed=0)
        result = tiny_case(args, work, data)
        if args.paper:
            paper = paper_case(args, work)
            result["summary"].update(paper["summary"])
            result["raw"].update(paper["raw"])
        result["raw"]["images"], result["raw"]["image_size"] = args.images, args.image_size
        s = result["summary"]
        write_result(NAME, summary=s, raw=result["raw"], started=started,
                     goals={"eval_only_variants_ratio": goal(s["eval_only_variants_ratio"], 1.2, "<="),
                            "eval_variants_identical": goal(s["eval_variants_identical"], 1.0, ">=")})
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
