"""Time per epoch of every stage, tiny and paper presets, on this machine; and the metrics reached.

    .venv/bin/python bench/bench_pipelines.py                  # tiny-a, tiny-b full runs + paper step timing
    .venv/bin/python bench/bench_pipelines.py --skip-paper --threads 2
    .venv/bin/python bench/bench_pipelines.py --data DIR --images 300

Tiny presets are trained to completion on a synthetic set (default 300 images, 256 px) and report
seconds per epoch of each stage plus the validation metrics. Paper presets (EfficientNet-B7 300 px,
U-Net++/B7 320 px) are far too slow to train on a CPU, so each stage runs ``--paper-steps`` optimisation
steps of batch ``--paper-batch``; the table gives seconds per step and the epoch time extrapolated to
the training split of the same data. Prints a markdown table; ``--json`` writes the numbers too.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

KEYS = ("balanced_accuracy", "macro_f1", "cohen_kappa", "dice_mean", "dice_median", "malignant_sensitivity",
        "malignant_specificity")


def ensure_data(path: Path | None, images: int) -> Path:
    if path is not None:
        return path
    from harness.data.synth import synthesize

    root = Path(tempfile.gettempdir()) / f"harness-bench-synth-{images}"
    if not (root / "training_metadata.xlsx").exists():
        synthesize(root, n_images=images, size=256, seed=0)
    return root


def stage_rows(result, preset: str, steps: int | None = None, batch: int | None = None, n_train: int = 0) -> list[dict]:
    rows = []
    for name, rec in result.stages.items():
        hist = rec.get("history", [])
        per_epoch = sum(h["seconds"] for h in hist) / max(len(hist), 1)
        row = {"preset": preset, "stage": name, "epochs": rec["epochs"], "s_per_epoch": per_epoch,
               "best": rec["best_metric"], "metric": rec["metric_name"]}
        if steps:  # an epoch here = `steps` optimisation steps + a full validation pass
            train_s = sum(h["train_seconds"] for h in hist) / max(len(hist), 1)
            row["s_per_step"] = train_s / steps
            row["s_validation"] = per_epoch - train_s
            row["s_per_epoch_extrapolated"] = train_s / steps * max(1, n_train // batch) + row["s_validation"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--paper-steps", type=int, default=2)
    ap.add_argument("--paper-batch", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-runs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from harness.config import load_run_config
    from harness.pipelines.run import run_trial

    data = ensure_data(args.data, args.images)
    stages, metrics = [], {}
    if not args.skip_tiny:
        for preset in ("tiny-a", "tiny-b"):
            t0 = time.perf_counter()
            cfg = load_run_config(preset, [f"runtime.threads={args.threads}"])
            res = run_trial(cfg, args.out / f"{preset}-{int(t0)}", data_dir=data)
            stages += stage_rows(res, preset)
            metrics[preset] = {k: res.metrics.get(k) for k in KEYS} | {"wall_s": time.perf_counter() - t0}
    if not args.skip_paper:
        steps, batch = args.paper_steps, args.paper_batch
        for preset in ("paper-a", "paper-b"):
            over = [f"runtime.threads={args.threads}", "classifier.pretrained=false", "segmenter.pretrained=false",
                    "eval.tta=false"]
            for sec in ("classifier", "segmenter"):
                over += [f"{sec}.optim.epochs=1", f"{sec}.optim.batch_size={batch}",
                         f"{sec}.optim.max_steps_per_epoch={steps}"]
            cfg = load_run_config(preset, over)
            t0 = time.perf_counter()
            res = run_trial(cfg, args.out / f"{preset}-{int(t0)}", data_dir=data)
            from harness.data.check import load_index
            from harness.data.splits import load_split

            split = load_split(data, cfg.data.split, load_index(data, check=False))
            stages += stage_rows(res, preset, steps, batch, len(split.train))
            metrics[preset] = {"wall_s": time.perf_counter() - t0}

    print(f"\n## Stage timings ({args.threads} thread(s), data {data})\n")
    print("| preset | stage | epochs | s/epoch | s/step | s/validation pass | s/epoch (extrapolated) "
          "| best val metric |")
    print("|---|---|---|---|---|---|---|---|")
    for r in stages:
        step = f"{r['s_per_step']:.2f}" if "s_per_step" in r else ""
        val = f"{r['s_validation']:.1f}" if "s_validation" in r else ""
        extra = f"{r['s_per_epoch_extrapolated']:.0f}" if "s_per_epoch_extrapolated" in r else ""
        print(f"| {r['preset']} | {r['stage']} | {r['epochs']} | {r['s_per_epoch']:.2f} | {step} | {val} | {extra} | "
              f"{r['metric']} {r['best']:.3f} |")
    print("\n## Validation metrics of the tiny runs\n")
    for preset, m in metrics.items():
        print(f"- {preset}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items() if isinstance(v, float)))
    if args.json:
        args.json.write_text(json.dumps({"stages": stages, "metrics": metrics}, indent=2, default=str))


if __name__ == "__main__":
    main()
