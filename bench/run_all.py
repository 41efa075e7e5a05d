"""`make bench`: every benchmark script in turn, then ``bench/results/summary.json`` with the headline figures.

    .venv/bin/python bench/run_all.py                 # the whole suite (<= 20 minutes on 2 cores)
    .venv/bin/python bench/run_all.py bench_fit bench_ray   # some scripts only (summary.json keeps the others)

Each script writes ``bench/results/<name>.json`` (machine, versions, raw timings, its summary figures;
see ``bench/common.py``). ``summary.json`` merges the summaries of the files this run wrote with those of
earlier runs for scripts not run now, and says for every figure when and by which script it was measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS, machine, versions  # noqa: E402

SUITE: list[tuple[str, list[str]]] = [
    ("bench_fit", ["--steps", "8"]),  # a tiny epoch of the demo data has 10-15 steps
    ("bench_eval_variants", []),
    ("bench_ray", []),
    ("bench_scaling", []),
    ("bench_search", []),
    ("bench_study", []),
    ("bench_synth", []),
    ("bench_cache", []),
    ("bench_report", []),
]
"""(script, arguments) in the order ``make bench`` runs them; quick settings are each script's defaults."""

KEYS = ("step_overhead_ratio", "data_loading_fraction", "eval_only_variants_ratio", "ray_overhead_s_per_trial",
        "packing_efficiency", "quickstart_s", "search_efficiency_ratio")
"""Headline figures the issue asks for (scaling slopes come on top, under ``scaling_*`` keys)."""


def main(argv: list[str]) -> int:
    wanted = [a.removesuffix(".py") for a in argv]
    suite = [(n, a) for n, a in SUITE if not wanted or n in wanted]
    unknown = sorted(set(wanted) - {n for n, _ in SUITE})
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(n for n, _ in SUITE)}",
              file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed, seconds = [], {}
    t_all = time.perf_counter()
    for name, args in suite:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"\n=== {name}: not present, skipped ===", flush=True)
            failed.append(name)
            continue
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *args])
        seconds[name] = round(time.perf_counter() - t0, 1)
        if code != 0:
            failed.append(name)
    summary = merge(seconds)
    print_table(summary)
    print(f"\nsuite: {time.perf_counter() - t_all:.0f} s; wrote {RESULTS / 'summary.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def merge(seconds: dict[str, float]) -> dict:
    """summary.json: every script's summary figures and goals, with where and when each was measured."""
    figures, goals, sources = {}, {}, {}
    for path in sorted(RESULTS.glob("bench_*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key, value in (doc.get("summary") or {}).items():
            figures[key] = value
            sources[key] = {"script": doc.get("name"), "measured": doc.get("started")}
            if key in (doc.get("goals") or {}):
                goals[key] = doc["goals"][key]
    missing = [k for k in KEYS if k not in figures]
    out = {**figures, "_goals": goals, "_sources": sources, "_missing": missing, "_machine": machine(),
           "_versions": versions(), "_suite_seconds": seconds,
           "_written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (RESULTS / "summary.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def print_table(summary: dict) -> None:
    print("\n| figure | value | goal | met |\n|---|---|---|---|")
    for key, value in summary.items():
        if key.startswith("_"):
            continue
        g = summary["_goals"].get(key)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"| {key} | {shown} | {g['op'] + ' ' + str(g['goal']) if g else ''} | "
              f"{('yes' if g['met'] else 'NO') if g else ''} |")
    if summary["_missing"]:
        print(f"\nmissing: {', '.join(summary['_missing'])}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
