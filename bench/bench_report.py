"""Time `harness report` on fake runs of a realistic size.

    .venv/bin/python bench/bench_report.py                     # 300 images, A and B, 1 seed
    .venv/bin/python bench/bench_report.py --seeds 3 --gradcam # 3 seeds each + tiny-model Grad-CAM

Builds a fake dataset (ultrasound-like PNGs at --size) and runs with the `harness run` layout
(harness.testing), then times the CLI end to end (fresh interpreter, as a user runs it)
and the stages in process: load, Table 9 + bootstrap, exports, figures + html.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=1, help="runs per pipeline")
    ap.add_argument("--size", default="450x560", help="image HxW (BUSI images are ~500x600)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--gradcam", action="store_true",
                    help="add tiny classifiers and time Grad-CAM in process (the CLI run always skips it: "
                         "harness.pipelines.artifacts cannot rebuild the fake checkpoints)")
    ap.add_argument("--keep", type=Path, default=None, help="build the runs here and keep them")
    args = ap.parse_args()
    started = time.time()
    h, w = (int(v) for v in args.size.lower().split("x"))

    from harness.report.build import ReportResult, compute, write_html
    from harness.report.export import write_table9
    from harness.report.loader import load_sources
    from harness.testing.artifacts import FakeArtifacts, add_fake_classifier
    from harness.testing.runs import make_runs

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_report_"))
    t = time.perf_counter()
    runs = make_runs(root, args.images, seeds=range(1, args.seeds + 1), size=(w, h))
    if args.gradcam:
        for r in runs:
            add_fake_classifier(r, image_size=128)
    print(f"fake runs: {len(runs)} x {args.images} images at {h}x{w} in {time.perf_counter() - t:.1f} s -> {root}")

    out = root / "report_cli"
    cmd = [sys.executable, "-m", "harness", "-q", "report", *map(str, runs), "--out", str(out),
           "--bootstrap", str(args.bootstrap), "--no-gradcam"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cli = time.perf_counter() - t

    t = time.perf_counter()
    sources = load_sources(runs)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    data = compute(sources, n_boot=args.bootstrap)
    t_compute = time.perf_counter() - t
    out2 = root / "report_inproc"
    t = time.perf_counter()
    result = ReportResult(out_dir=out2, files=write_table9(out2, data.table9, data.tests, data.sheets, data.caption))
    t_export = time.perf_counter() - t
    t = time.perf_counter()
    write_html(out2, data, result, FakeArtifacts() if args.gradcam else None, gradcam=args.gradcam)
    t_html = time.perf_counter() - t
    print(f"harness report (CLI, fresh interpreter, no Grad-CAM): {cli:.1f} s")
    print(f"  in process: load {t_load:.2f} s | Table 9 + bootstrap (B={args.bootstrap}) {t_compute:.2f} s | "
          f"csv/xlsx/md/tex {t_export:.2f} s | figures + html{' + Grad-CAM (tiny model)' if args.gradcam else ''} "
          f"{t_html:.2f} s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import write_result

    write_result("bench_report", summary={"report_cli_s": cli}, started=started,
                 raw={"images": args.images, "runs": len(runs), "size": [h, w], "bootstrap": args.bootstrap,
                      "load_s": t_load, "table9_bootstrap_s": t_compute, "exports_s": t_export, "html_s": t_html})


if __name__ == "__main__":
    main()
