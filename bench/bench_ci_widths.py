"""Table 9 CI widths with image and with patient resampling, on fake runs with BUSI-like patients.

    .venv/bin/python bench/bench_ci_widths.py                      # 300 images, sets of seeds 0 and 1
    .venv/bin/python bench/bench_ci_widths.py --correlation 0 0.8  # images of a patient independent / alike

Each fake dataset has patients of 1-3 images (1, 2, 3, 2 cycled), and each image of a patient repeats its first
image's outcome with probability ``--correlation`` (views of one lesion go right or wrong
together). The same run is reported twice: with its ``patient_id`` column (the patient bootstrap)
and without it (the fallback: every image its own patient, i.e. the image bootstrap). Prints the
mean CI width per Table 9 row for pipelines A and B and the patient/image ratio.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import pandas as pd

IMAGES_PER_PATIENT = (1, 2, 3, 2)  # cycled over patients (labels cycle with period 3: no confounding)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--sets", type=int, nargs="+", default=[0, 1], help="dataset seeds")
    ap.add_argument("--correlation", type=float, nargs="+", default=[0.0, 0.8])
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the fallback warns once per run, on purpose

    from harness.report.loader import load_run
    from harness.report.table9 import build_table9
    from harness.testing.datasets import make_dataset
    from harness.testing.runs import make_run

    root = Path(tempfile.mkdtemp(prefix="bench_ci_"))
    rows = []
    for data_seed in args.sets:
        images = make_dataset(root / f"data{data_seed}", args.images, (96, 72), seed=data_seed,
                              images_per_patient=IMAGES_PER_PATIENT).images
        n_patients = len({im.patient_id for im in images})
        for rho in args.correlation:
            for p, acc, seg in (("a", 0.86, 0.8), ("b", 0.8, 0.9)):
                run = make_run(root / f"{p}_d{data_seed}_r{rho}", images, p, seed=data_seed + 1, accuracy=acc,
                               seg_quality=seg,
                               patient_correlation=rho)
                old = root / f"{p}_d{data_seed}_r{rho}_noid"
                pred = pd.read_csv(run / "predictions.csv")
                old.mkdir()
                for f in run.iterdir():
                    if f.is_file() and f.name != "predictions.csv":
                        (old / f.name).write_bytes(f.read_bytes())
                pred.drop(columns="patient_id").to_csv(old / "predictions.csv", index=False)
                widths = {}
                for unit, d in (("patients", run), ("images", old)):
                    t = build_table9({"X": [load_run(d)]}, n_boot=args.bootstrap)[0].set_index("metric")
                    widths[unit] = t["X_ci_high"] - t["X_ci_low"]
                for metric in widths["patients"].index:
                    rows.append({"set": data_seed, "patients": n_patients, "rho": rho, "pipeline": p.upper(),
                                 "metric": metric, "image CI": widths["images"][metric],
                                 "patient CI": widths["patients"][metric]})
    df = pd.DataFrame(rows)
    df["ratio"] = df["patient CI"] / df["image CI"]
    pd.set_option("display.width", 200)
    print(f"{args.images} images per set; B = {args.bootstrap}; CI width = 95% percentile interval\n")
    print(df.pivot_table(index=["set", "rho", "pipeline"], columns="metric", values="ratio", sort=False).round(2)
          .to_string())
    print("\nmean width, image -> patient resampling:")
    print(df.groupby(["set", "rho", "metric"], sort=False)[["image CI", "patient CI", "ratio"]].mean().round(3)
          .to_string())


if __name__ == "__main__":
    main()
