"""Decode-every-epoch vs cached epoch: what the decoded-image cache buys per epoch.

    .venv/bin/python bench/bench_cache.py                 # 300 synthetic images, 256 px -> 128 px
    .venv/bin/python bench/bench_cache.py --data DIR --size 320 --repeats 5

An "epoch" reads every image and mask of the dataset once in a shuffled order at the model input
size, single-threaded: either decoding + resizing the PNGs (what a plain Dataset does) or copying
the rows out of the memory-mapped cache (what harness.data.cache gives). Both are timed
``--repeats`` times and the median is printed, plus the one-off cache build time.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from harness.data.cache import load_cache, load_resized
from harness.data.check import load_index
from harness.data.synth import synthesize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def median_time(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="existing dataset directory (default: write one with harness.data.synth)")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=256, help="side of the written images")
    parser.add_argument("--size", type=int, default=128, help="model input size (cache size)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.time()
    logging.basicConfig(level=logging.WARNING)
    cv2.setNumThreads(1)

    tmp = None
    root = args.data
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))
        root = tmp / "ds"
        t = time.perf_counter()
        synthesize(root, n_images=args.images, size=args.image_size, seed=0)  # realistic PNGs: real decode cost
        print(f"wrote {args.images} images of {args.image_size} px in {time.perf_counter() - t:.1f} s")
    try:
        index = load_index(root, check=False)
        cache_dir = Path(tempfile.mkdtemp(prefix="bench_cache_npy_"))
        t = time.perf_counter()
        cache = load_cache(index, args.size, cache_dir=cache_dir)
        build = time.perf_counter() - t
        order = np.random.default_rng(0).permutation(len(index))

        def decode_epoch() -> None:
            for i in order:
                load_resized(index, index.records[i], args.size)

        def cached_epoch() -> None:
            for i in order:
                np.array(cache.images[i]), np.array(cache.masks[i])

        decode = median_time(decode_epoch, args.repeats)
        cached = median_time(cached_epoch, args.repeats)
        n = len(index)
        print(f"dataset: {root} ({n} images), model input {args.size} px, median of {args.repeats} epochs, 1 thread")
        print(f"decode every epoch: {decode:.3f} s/epoch ({n / decode:.0f} images/s)")
        print(f"cached epoch:       {cached:.4f} s/epoch ({n / cached:.0f} images/s)")
        print(f"speed-up:           {decode / cached:.0f}x")
        print(f"cache build (once): {build:.2f} s (2 threads), verified load: ", end="")
        t = time.perf_counter()
        load_cache(index, args.size, cache_dir=cache_dir)
        verified = time.perf_counter() - t
        print(f"{verified:.3f} s")
        write_result("bench_cache", summary={"cache_speedup": decode / cached}, started=started,
                     raw={"images": n, "size": args.size, "repeats": args.repeats, "decode_s_per_epoch": decode,
                          "cached_s_per_epoch": cached, "cache_build_s": build, "cache_verified_load_s": verified})
        shutil.rmtree(cache_dir, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
