"""What every benchmark script shares: machine facts, versions, and the results file it writes.

Each script writes ``bench/results/<name>.json``::

    {"name": ..., "machine": {...}, "versions": {...}, "started": ..., "seconds": ...,
     "summary": {<headline key>: <number>}, "goals": {<key>: {"goal": ..., "op": "<=" | ">=", "met": bool}},
     "raw": {...}}

``summary`` holds the headline figures (the keys of ``bench/results/summary.json``, which
``bench/run_all.py`` merges from every script's file); ``raw`` holds the timings they were computed from,
so a figure can always be recomputed. Figures are ratios measured side by side in one run wherever
possible: absolute times on a shared 2-core VM move by 10-30 %, ratios much less.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DISTRIBUTIONS = ("torch", "torchvision", "timm", "segmentation-models-pytorch", "albumentations", "ray", "optuna",
                 "wandb", "numpy", "harness")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine() -> dict[str, Any]:
    """CPU model and cores, memory, GPU (when torch sees one), host and OS."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {"host": socket.gethostname(), "os": platform.platform(), "cpu": cpu, "cores": cores,
                            "memory_gib": mem_gib, "cuda": False, "gpus": []}
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda"] = True
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each callable, run in turn (a, b, a, b, ...) ``repeats`` times after ``warmup`` untimed
    rounds, so that a slow phase of the machine hits every arm alike. Returns name -> list of seconds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def goal(value: float, target: float, op: str) -> dict[str, Any]:
    met = value <= target if op == "<=" else value >= target
    return {"value": value, "goal": target, "op": op, "met": bool(met)}


def write_result(name: str, *, summary: dict[str, float], raw: dict[str, Any], started: float,
                 goals: dict[str, dict[str, Any]] | None = None, results: Path | None = None) -> Path:
    """Write ``<results>/<name>.json`` (default ``bench/results``; ``$HARNESS_BENCH_RESULTS`` overrides) and
    print the summary; returns the path."""
    root = Path(results or os.environ.get("HARNESS_BENCH_RESULTS") or RESULTS)
    root.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "machine": machine(), "versions": versions(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
           "seconds": round(time.time() - started, 2), "argv": sys.argv, "summary": summary,
           "goals": goals or {}, "raw": raw}
    path = root / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(path)
    for key, value in summary.items():
        g = (goals or {}).get(key)
        mark = "" if g is None else f"  (goal {g['op']} {g['goal']}: {'met' if g['met'] else 'MISSED'})"
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{name}: {key} = {shown}{mark}", flush=True)
    print(f"{name}: wrote {path}", flush=True)
    return path
