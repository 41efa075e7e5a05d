"""Benchmark of the synthetic dataset generator: images/s on one core (target >= 20 at 256 px).

Run: ``.venv/bin/python bench/bench_synth.py [--n 100] [--size 256] [--repeat 3]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/cv2/torch are imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import goal, write_result  # noqa: E402
from harness.data.synth import synthesize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images per run")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    args = parser.parse_args(argv)
    import time

    started = time.time()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            summary = synthesize(Path(tmp) / f"run{i}", n_images=args.n, size=args.size, seed=i)
            rates.append(summary.images_per_s)
            print(f"run {i}: {args.n} images at {args.size} px in {summary.seconds:.2f} s = "
                  f"{summary.images_per_s:.1f} images/s")
    median = statistics.median(rates)
    print(f"synth: {median:.1f} images/s (median of {args.repeat}, N={args.n}, size={args.size}, 1 thread)")
    write_result("bench_synth", summary={"synth_images_per_s": median}, started=started,
                 raw={"images_per_s": rates, "n": args.n, "size": args.size, "threads": 1},
                 goals={"synth_images_per_s": goal(median, 20.0, ">=")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
