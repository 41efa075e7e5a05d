"""Quality per CPU minute of the tiny presets on synthetic sets they were not tuned on, next to a bare script.

    .venv/bin/python bench/bench_presets.py --quick        # 2 data variants x 2 seeds x tiny-a/b/c (~30 CPU min)
    .venv/bin/python bench/bench_presets.py                # 4 variants x 3 seeds, a baseline per run (~2.5 CPU h)
    .venv/bin/python bench/bench_presets.py --presets tiny-a old/tiny-a.yaml --variants s1 --seeds 42 7

NOT part of ``make bench`` (``bench/run_all.py``): even ``--quick`` trains dozens of models and takes far
longer than that suite's 20 minutes. Run it by hand when the tiny presets change.

For every data variant (a synthetic set of 300 images at 256 px written by ``harness.data.synth`` with a seed
other than the default 0 and, for most, changed acquisition settings: gain, speckle size, imaging depth,
dynamic range, lesion size), every training seed and every preset, it runs ``run_trial`` exactly as the
quickstart study's final runs do (split ``study``: 20 % validation, 20 % test, one thread) and records the
end-to-end balanced accuracy and lesion Dice (missed lesion = 0) on validation and test and the process CPU
seconds. Next to each run it trains the bare baseline (``bench/bare_baseline.py``: plain U-Net++ and a small
classifier, constant AdamW) for the same CPU seconds on the same split, and reports the gaps
preset - baseline. A run is flagged **collapsed** when a stage's last validation epoch fell below half of its
best one, when the run's end-to-end validation Dice is below half of its segmenter's best validation epoch,
or when its test Dice is below 0.05.

Summary (``bench/results/bench_presets.json`` via ``bench/common.py``), per preset: mean test balanced
accuracy and Dice, mean CPU seconds, quality per CPU minute, the worst gap to the baseline over variants and
seeds, and the number of collapsed runs. Goals: every gap >= -0.05 and no collapsed run.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SPLIT = ["data.split=study", "data.val_fraction=0.2", "data.test_fraction=0.2", "data.split_seed=42"]
VARIANTS: dict[str, tuple[int, dict[str, Any]]] = {
    "s1": (1, {}),
    "s2-gain+6-speckle1.4": (2, {"gain_db": 6.0, "speckle_scale": 1.4}),
    "s3-depth1.3-dr55-70": (3, {"depth_scale": 1.3, "dynamic_range_db": (55.0, 70.0)}),
    "s4-lesion0.7-gain-4": (4, {"lesion_scale": 0.7, "gain_db": -4.0}),
}
"""name -> (synthetic seed, acquisition settings); none uses seed 0, the set the presets are usually run on."""
QUICK_VARIANTS = ("s1", "s3-depth1.3-dr55-70")
METRICS = ("balanced_accuracy", "dice_mean")


def make_variant(root: Path, name: str, images: int) -> Path:
    from dataclasses import replace

    from harness.data.synth import DEFAULT_ACQUISITION, synthesize

    seed, knobs = VARIANTS[name]
    out = root / f"{name}-{images}"
    if not (out / "training_metadata.xlsx").exists():
        synthesize(out, n_images=images, size=256, seed=seed, acquisition=replace(DEFAULT_ACQUISITION, **knobs))
    return out


def collapse(result: Any) -> list[str]:
    """Why a run counts as collapsed (empty: it did not)."""
    why = []
    seg_best = None
    for name, rec in result.stages.items():
        curve = [h["val_metric"] for h in rec.get("history", [])]
        if curve and max(curve) > 0.1 and curve[-1] < 0.5 * max(curve):
            why.append(f"{name}: last val {curve[-1]:.3f} < half its best {max(curve):.3f}")
        if rec.get("metric_name") == "dice":
            seg_best = rec["best_metric"]
    val_dice = float(result.metrics.get("dice_mean", float("nan")))
    if seg_best is not None and val_dice < 0.5 * seg_best:
        why.append(f"end-to-end val Dice {val_dice:.3f} < half the segmenter's best epoch {seg_best:.3f}")
    test = result.test_metrics or {}
    if float(test.get("dice_mean", 1.0)) < 0.05:
        why.append(f"test Dice {float(test['dice_mean']):.3f}")
    return why


def run_preset(preset: str, data: Path, seed: int, out: Path, overrides: list[str]) -> dict[str, Any]:
    import torch

    from harness.config import load_run_config
    from harness.pipelines.run import run_trial

    config = load_run_config(preset, [*SPLIT, "runtime.threads=1", f"runtime.seed={seed}", *overrides])
    torch.set_num_threads(1)
    t0 = time.process_time()
    result = run_trial(config, out, data_dir=data, progress=False)
    cpu = time.process_time() - t0
    row: dict[str, Any] = {"preset": config.name, "source": preset, "cpu_s": cpu, "collapsed": collapse(result)}
    for subset, metrics in (("val", result.metrics), ("test", result.test_metrics or {})):
        for key in METRICS:
            row[f"{subset}_{key}"] = float(metrics.get(key, float("nan")))
    row["stages"] = {n: {"epochs": r["epochs"], "best_epoch": r["best_epoch"], "best": r["best_metric"],
                         "curve": [round(h["val_metric"], 3) for h in r.get("history", [])]}
                     for n, r in result.stages.items()}
    return row


def bare_row(bare: dict[str, Any]) -> dict[str, Any]:
    return {"cpu_s": bare["cpu_s"], **{f"{s}_{k}": v for s in ("val", "test") for k, v in bare[s].items()}}


def summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    from common import goal

    summary: dict[str, float] = {}
    goals: dict[str, dict[str, Any]] = {}
    for preset in sorted({r["preset"] for r in rows}):
        mine = [r for r in rows if r["preset"] == preset]
        key = preset.replace("-", "_")
        cpu = statistics.mean(r["cpu_s"] for r in mine)
        summary[f"{key}_cpu_s"] = round(cpu, 1)
        for m in METRICS:
            short = "bacc" if m == "balanced_accuracy" else "dice"
            mean = statistics.mean(r[f"test_{m}"] for r in mine)
            summary[f"{key}_test_{short}"] = round(mean, 4)
            summary[f"{key}_test_{short}_per_cpu_min"] = round(mean / (cpu / 60), 4)
            gaps = [r[f"test_{m}"] - r["bare"][f"test_{m}"] for r in mine if "bare" in r]
            if gaps:
                summary[f"{key}_worst_gap_{short}"] = round(min(gaps), 4)
                goals[f"{key}_worst_gap_{short}"] = goal(round(min(gaps), 4), -0.05, ">=")
        n = sum(bool(r["collapsed"]) for r in mine)
        summary[f"{key}_collapsed_runs"] = n
        goals[f"{key}_collapsed_runs"] = goal(n, 0, "<=")
    return summary, goals


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| variant | seed | preset | CPU s | val bacc | val Dice | test bacc | test Dice | bare test bacc | "
            "bare test Dice | collapsed |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        b = r.get("bare", {})
        lines.append(f"| {r['variant']} | {r['seed']} | {r['preset']} | {r['cpu_s']:.0f} | "
                     f"{r['val_balanced_accuracy']:.3f} | {r['val_dice_mean']:.3f} | "
                     f"{r['test_balanced_accuracy']:.3f} | "
                     f"{r['test_dice_mean']:.3f} | {b.get('test_balanced_accuracy', float('nan')):.3f} | "
                     f"{b.get('test_dice_mean', float('nan')):.3f} | {'; '.join(r['collapsed']) or '-'} |")
    return "\n".join(lines)


def main() -> None:
    from bare_baseline import run_baseline
    from common import write_result

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"variants {', '.join(QUICK_VARIANTS)}, seeds 42 7")
    ap.add_argument("--presets", nargs="+", default=["tiny-a", "tiny-b", "tiny-c"], help="names or YAML paths")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="data variants (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, help="training seeds (default: 42 7 1; --quick: 42 7)")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--no-baseline", action="store_true", help="skip the bare baseline runs")
    ap.add_argument("--baseline-once", action="store_true",
                    help="one baseline per variant and seed, at the mean CPU time of its preset runs (default with "
                         "--quick; otherwise one per preset run, at that run's CPU time)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for every preset run")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "harness-bench-presets")
    ap.add_argument("--name", default="bench_presets", help="results file name (default: bench_presets)")
    ap.add_argument("--jsonl", type=Path, help="also append every row to this file as it finishes")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    t0 = time.time()
    args.baseline_once = args.baseline_once or args.quick
    variants = args.variants or (list(QUICK_VARIANTS) if args.quick else list(VARIANTS))
    seeds = args.seeds or ([42, 7] if args.quick else [42, 7, 1])
    rows: list[dict[str, Any]] = []
    for variant in variants:
        data = make_variant(args.work / "data", variant, args.images)
        for seed in seeds:
            group = []
            for preset in args.presets:
                out = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
                row = {"variant": variant, "seed": seed, **run_preset(preset, data, seed, out, args.overrides)}
                if not args.no_baseline and not args.baseline_once:
                    row["bare"] = bare_row(run_baseline(data, row["cpu_s"], seed=seed))
                group.append(row)
                print(json.dumps({k: row[k] for k in ("variant", "seed", "preset", "cpu_s", "test_balanced_accuracy",
                                                      "test_dice_mean", "collapsed")}), flush=True)
            if args.baseline_once and not args.no_baseline:
                bare = bare_row(run_baseline(data, statistics.mean(r["cpu_s"] for r in group), seed=seed))
                print(json.dumps({"variant": variant, "seed": seed, "bare": bare}), flush=True)
                for row in group:
                    row["bare"] = bare
            rows.extend(group)
            if args.jsonl:
                with args.jsonl.open("a") as f:
                    f.writelines(json.dumps(row) + "\n" for row in group)
    summary, goals = summarise(rows)
    print(table(rows))
    write_result(args.name, summary=summary, raw={"variants": {v: VARIANTS[v] for v in variants}, "rows": rows},
                 started=t0, goals=goals)


if __name__ == "__main__":
    main()
