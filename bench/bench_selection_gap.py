"""Winner's curse, measured: the selected configuration's validation-to-test gap with K = 1 (one
validation subset) and K = 5 (patient-wise cross-validation), on synthetic sets of other seeds.

    .venv/bin/python bench/bench_selection_gap.py                  # sets of seeds 1 and 2, 160 images
    .venv/bin/python bench/bench_selection_gap.py --sets 3 --images 300

Each study: pipeline B (tiny-b), an evaluation-only grid (rho in {0, 0.2, 0.4} x TTA on/off: 6
trials that share one training per fold), selection on K folds, one final seed on the held-out test
subset. Prints the gap table of every study (harness.report.selection) and writes
bench/results/selection_gap.json. Also prints Table 9's CI widths of the final run with patient and
with image resampling (its predictions.csv without the patient_id column).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

SPACE = {"params": {"roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.2},
                    "eval.tta": {"type": "categorical", "choices": [True, False]}}}


def study_spec(k: int):
    from harness.tune.study import StudySpec

    return StudySpec.model_validate({
        "name": f"gap_k{k}", "pipelines": ["b"], "base": {"b": "tiny-b"}, "search_space": SPACE,
        "sampler": "grid", "scheduler": {"type": "fifo"}, "resources": {"cpu": 1}, "selection": {"folds": k},
        "final": {"seeds": [1]}, "wandb": {"enabled": False},
        "data": {"split": "study", "val_fraction": 0.2, "test_fraction": 0.2}})


def ci_widths(run_dir: Path) -> dict[str, float]:
    """Mean Table 9 CI width of the run with patient ids and with every image its own patient."""
    from harness.report.loader import load_run
    from harness.report.table9 import build_table9

    out = {}
    for unit in ("patient", "image"):
        run = load_run(run_dir)
        if unit == "image":
            run.predictions["patient_id"] = run.predictions["image_id"]
        table, _ = build_table9({"B": [run]}, n_boot=1000)
        width = (table["B_ci_high"] - table["B_ci_low"]).mean()
        out[unit] = float(width)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, nargs="+", default=[1, 2], help="synthetic dataset seeds")
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 5])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    from harness.data.synth import synthesize
    from harness.report.selection import gap_table
    from harness.tune.runner import run_study

    root = Path(tempfile.mkdtemp(prefix="bench_gap_"))
    results = []
    for s in args.sets:
        data = root / f"synth{s}"
        synthesize(data, n_images=args.images, size=256, seed=s)
        for k in args.folds:
            t0 = time.perf_counter()
            out = root / f"set{s}_k{k}"
            ray.shutdown()
            summary = run_study(study_spec(k), out, data_dir=data, ray_init={"num_cpus": 2, "log_to_driver": False})
            ray.shutdown()
            _, gaps = gap_table(out)
            row = gaps.iloc[0].to_dict()
            widths = ci_widths(Path(summary["final"][0]))
            results.append({"set": s, "folds": k, "seconds": time.perf_counter() - t0, **row,
                            "ci_width_patient": widths["patient"], "ci_width_image": widths["image"]})
            print(json.dumps(results[-1], default=str))
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "selection_gap.json").write_text(json.dumps(results, indent=2, default=str))
    head = ("set", "K", "validation", "test", "gap", "CI image", "CI patient", "s")
    print("\n" + " ".join(f"{h:>10}" for h in head))
    for r in results:
        print(f"{r['set']:>10} {r['folds']:>10} {r['validation']:>10.3f} {r['test']:>10.3f} {r['gap']:>10.3f} "
              f"{r['ci_width_image']:>10.3f} {r['ci_width_patient']:>10.3f} {r['seconds']:>10.0f}")


if __name__ == "__main__":
    main()
