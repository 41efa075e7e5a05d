"""The quickstart end to end, and how well its trials pack the workers.

    .venv/bin/python bench/bench_study.py                    # `harness quickstart` on fresh synthetic data
    .venv/bin/python bench/bench_study.py --existing DIR     # analyse a finished study directory only

By default this runs ``python -m harness quickstart --data D --out S`` in a subprocess from the
repository root, as a user would (300 synthetic images made by the command itself; W&B offline, as the
quickstart is without credentials; ``WANDB_MODE=offline`` is set unless the caller set a mode), then
reads back the study directory. Figures:

- ``quickstart_s``: wall time of that command (synthesis, plan, study, report), goal <= 600 s.
- **busy time** of a run (search trial or final run): the seconds it spent inside ``run_trial``
  (``trial.json`` clock ``run_started`` -> ``run_ended``, which for a completed run is ``run.json``
  ``seconds`` plus the fold loop; for a trial stopped by ASHA or the time budget, until it was stopped)
  minus the seconds it waited for stage locks while another run trained that stage
  (``lock_wait_s``: the worker was idle then; a stopped trial writes no stage records, so a lock wait
  before its stop would count as busy).
- **phases**: the study's Tune experiment runs from ``timings.json`` ``started`` to ``ended`` (search and
  final runs are one experiment; a pipeline's final runs start when its search ends). The search phase
  is [start, end of the last search trial], the final phase [that, end]; they partition the wall time.
- ``packing_efficiency_<phase>`` = busy seconds inside the phase window (each run's busy time prorated
  by how much of its ``run_trial`` interval falls in the window) / (slots x window seconds), where slots
  is the number of trials the cluster runs at once (``timings.json``); ``packing_efficiency`` is the
  lower of the two (goal >= 0.9); ``packing_efficiency_overall`` the same over the whole session.
- the rest of the slot time, per phase: ``overhead`` (a run in its worker outside ``run_trial``:
  imports on a cold worker, W&B init/finish, reports), ``lock_wait``, ``idle`` (no run on the slot:
  Tune start-up, hand-over between runs, the tail), and the share of busy time spent in trials ASHA
  stopped (``stopped``, counted as busy: they trained).

Raw rows, one per run: kind, pipeline, outcome, worker pid, cold/warm, queued (search trials: Optuna ask
-> trainable entered: time waiting in the study's queue and as Tune's pending trial, no worker held),
overhead and its parts, busy, lock wait, cached (trained no stage) or trained, stopped.
Studies written before trial clocks existed are read approximately (``run.json`` seconds only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import goal, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="study directory (default: a new temporary directory)")
    ap.add_argument("--images", type=int, default=300, help="synthetic images the quickstart makes")
    ap.add_argument("--existing", type=Path, metavar="DIR", help="analyse this finished study directory only")
    args = ap.parse_args()
    t0 = time.time()
    raw: dict[str, Any] = {"load_before": os.getloadavg()}
    if args.existing:
        study, quickstart_s = args.existing, None
    else:
        base = args.out.parent if args.out else Path(tempfile.mkdtemp(prefix="harness-bench-study-"))
        study = args.out or base / "study"
        data = base / "data"
        cmd = [sys.executable, "-m", "harness", "quickstart", "--data", str(data), "--out", str(study),
               "--images", str(args.images)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.setdefault("WANDB_MODE", "offline")
        started = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
        quickstart_s = time.perf_counter() - started
        raw["command"] = cmd
    raw["load_after"] = os.getloadavg()
    result = analyse(study)
    raw.update(result)
    summary: dict[str, float] = {}
    goals = {}
    if quickstart_s is not None:
        summary["quickstart_s"] = round(quickstart_s, 1)
        goals["quickstart_s"] = goal(summary["quickstart_s"], 600, "<=")
    phases = result["phases"]
    packs = {p: phases[p]["packing"] for p in phases}
    summary["packing_efficiency"] = round(min(packs.values()), 3)
    goals["packing_efficiency"] = goal(summary["packing_efficiency"], 0.9, ">=")
    for p, v in packs.items():
        summary[f"packing_efficiency_{p}"] = round(v, 3)
    summary["packing_efficiency_overall"] = round(result["overall"]["packing"], 3)
    print_report(result)
    write_result("bench_study", summary=summary, raw=raw, started=t0, goals=goals)


def _json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _asks(study: Path) -> dict[str, float]:
    """Search trial directory name -> when its Optuna trial was asked (``time.time()``)."""
    import optuna

    from harness.tune.bookkeeping import load_studies, open_storage
    from harness.tune.paths import StudyPaths
    from harness.tune.status import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = load_studies(load_spec(study), open_storage(StudyPaths(study).storage_url))
    return {str(t.user_attrs.get("trial_dir")): t.datetime_start.timestamp()
            for s in studies.values() for t in s.trials if t.datetime_start and t.user_attrs.get("trial_dir")}


def load_runs(study: Path) -> list[dict[str, Any]]:
    """One row per search trial and final run that reached a worker (module docstring)."""
    asks = _asks(study)
    rows = []
    for kind, parent in (("search", study / "trials"), ("final", study / "final")):
        for d in sorted(parent.glob("*/trial.json")):
            d = d.parent
            info, run = _json(d / "trial.json"), _json(d / "run.json")
            clock = info.get("clock") or {}
            stages = [_json(p) for p in sorted(d.glob("stages/*.json")) + sorted(d.glob("fold*/stages/*.json"))]
            entered = float(clock.get("entered", info.get("started", 0.0)))
            run_started = float(clock.get("run_started", entered))
            run_ended = clock.get("run_ended") or (run_started + float(run["seconds"]) if run else run_started)
            ended = float(clock.get("ended") or run_ended)
            outcome = clock.get("outcome") or ("completed" if run else "stopped")
            lock = float(clock.get("lock_wait_s", sum(float(s.get("lock_wait_s", 0.0)) for s in stages)))
            in_run = float(run_ended) - run_started
            trained = [s["stage"] for s in stages if not s.get("cached") and "stage" in s]

            def step(a: str, b: str, c: dict[str, Any] = clock) -> float | None:
                return round(c[b] - c[a], 3) if a in c and b in c else None

            rows.append({
                "kind": kind, "name": d.name, "pipeline": d.name.split("-")[0], "outcome": outcome,
                "pid": info.get("pid"), "warm": clock.get("warm"), "entered": entered, "ended": ended,
                "run_started": run_started, "run_ended": float(run_ended),
                "busy_s": round(max(0.0, in_run - lock), 3), "lock_wait_s": round(lock, 3),
                "overhead_s": round(ended - entered - in_run, 3), "imports_s": step("entered", "imported"),
                "wandb_init_s": step("imported", "tracker_ready"), "wandb_finish_s": step("run_ended", "tracked"),
                "queued_s": round(entered - asks[d.name], 3) if d.name in asks else None,
                "cached": outcome == "completed" and not trained, "trained": trained,
                "stopped": outcome == "stopped"})
    return rows


def _overlap(a0: float, a1: float, w0: float, w1: float) -> float:
    return max(0.0, min(a1, w1) - max(a0, w0))


def phase_figures(rows: list[dict[str, Any]], w0: float, w1: float, slots: int) -> dict[str, Any]:
    """Slot time of the window [w0, w1] split into busy, lock wait, overhead and idle (module docstring)."""
    span = max(w1 - w0, 1e-9)
    busy = lock = in_trial = in_run = stopped = 0.0
    for r in rows:
        run_len = r["run_ended"] - r["run_started"]
        share = _overlap(r["run_started"], r["run_ended"], w0, w1) / run_len if run_len > 0 else 0.0
        busy += share * r["busy_s"]
        lock += share * r["lock_wait_s"]
        stopped += share * r["busy_s"] if r["stopped"] else 0.0
        in_run += _overlap(r["run_started"], r["run_ended"], w0, w1)
        in_trial += _overlap(r["entered"], r["ended"], w0, w1)
    total = slots * span
    return {"start": w0, "end": w1, "seconds": round(span, 1), "slots": slots, "packing": busy / total,
            "busy": busy / total, "lock_wait": lock / total, "overhead": (in_trial - in_run) / total,
            "idle": (total - in_trial) / total, "stopped": stopped / total,
            "runs": sum(_overlap(r["entered"], r["ended"], w0, w1) > 0 for r in rows)}


def analyse(study: Path) -> dict[str, Any]:
    rows = load_runs(study)
    if not rows:
        raise SystemExit(f"error: {study}: no trial.json under trials/ or final/; is it a study directory?")
    sessions = _json(study / "timings.json").get("sessions") or []
    if sessions:
        s0, s1, slots = sessions[-1]["started"], sessions[-1]["ended"], int(sessions[-1]["slots"])
    else:  # a study written before timings.json: from its first trial to its last run, 2 slots assumed
        s0 = min(r["entered"] - (r["queued_s"] or 0.0) for r in rows)
        s1, slots = max(r["ended"] for r in rows), 2
    search = [r for r in rows if r["kind"] == "search"]
    split = max((r["ended"] for r in search), default=s0)
    phases = {"search": phase_figures(rows, s0, split, slots)}
    if any(r["kind"] == "final" for r in rows):
        phases["final"] = phase_figures(rows, split, max(s1, split + 1e-9), slots)
    overall = phase_figures(rows, s0, s1, slots)
    cached = [r for r in search if r["cached"]]
    cold = [r for r in rows if r["warm"] is False]
    return {"study": str(study), "session": {"started": s0, "ended": s1, "slots": slots}, "phases": phases,
            "overall": overall,
            "cached_trials": {"n": len(cached),
                              "median_busy_s": _median(r["busy_s"] for r in cached),
                              "median_overhead_s": _median(r["overhead_s"] for r in cached),
                              "median_queued_s": _median(r["queued_s"] for r in cached if r["queued_s"] is not None),
                              "median_lock_wait_s": _median(r["lock_wait_s"] for r in cached)},
            "cold_workers": {"n": len(cold), "imports_s": [r["imports_s"] for r in cold],
                             "wandb_init_s": [r["wandb_init_s"] for r in cold]},
            "warm_overhead_median_s": _median(r["overhead_s"] for r in rows if r["warm"]),
            "rows": [{k: (round(v - s0, 2) if k in ("entered", "ended", "run_started", "run_ended") else v)
                      for k, v in r.items()} for r in sorted(rows, key=lambda r: r["entered"])]}


def _median(values: Any) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def print_report(result: dict[str, Any]) -> None:
    print(f"\n## Study {result['study']}\n")
    for name, p in {**result["phases"], "overall": result["overall"]}.items():
        print(f"- {name} phase: {p['seconds']:.0f} s x {p['slots']} slots, {p['runs']} runs: busy {p['busy']:.1%} "
              f"(of it in trials ASHA stopped {p['stopped']:.1%}), lock wait {p['lock_wait']:.1%}, "
              f"overhead {p['overhead']:.1%}, idle {p['idle']:.1%}")
    c = result["cached_trials"]
    print(f"- cached search trials: {c['n']}, median busy {c['median_busy_s']} s, overhead {c['median_overhead_s']} s,"
          f" queued {c['median_queued_s']} s (no worker held), lock wait {c['median_lock_wait_s']} s")
    print(f"- cold workers: {result['cold_workers']}; warm run overhead median {result['warm_overhead_median_s']} s")
    print("\n| t s | kind | run | outcome | pid | warm | queued s | in worker s | busy s | lock s | overhead s | "
          "trained |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['entered']:.1f} | {r['kind']} | {r['name']} | {r['outcome']} | {r['pid']} | {r['warm']} | "
              f"{r['queued_s']} | {r['ended'] - r['entered']:.1f} | {r['busy_s']:.1f} | {r['lock_wait_s']:.1f} | "
              f"{r['overhead_s']:.1f} | {','.join(r['trained']) or '-'} |")


if __name__ == "__main__":
    main()
