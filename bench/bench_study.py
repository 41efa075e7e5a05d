"""Study-level numbers: quickstart wall time, per-trial overhead, and what a stage-cache hit saves.

    .venv/bin/python bench/bench_study.py                     # the quickstart study on 300 synthetic images
    .venv/bin/python bench/bench_study.py --study studies/quickstart.yaml --data DIR --set trials=4

Reads back the study it ran: for every trial, wall time (Optuna start -> complete) versus the time
spent training and evaluating inside `run_trial` (`seconds` of its final report) gives the per-trial
overhead of Ray + Optuna + W&B; trials whose stages were all cache hits versus trials that trained
give the cache saving.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="studies/quickstart.yaml")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / f"harness-bench-study-{int(time.time())}")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--existing", type=Path, help="analyse a finished study directory instead of running one")
    args = ap.parse_args()

    import logging

    from harness.cli.study import _overrides
    from harness.report.build import build_report
    from harness.tune.runner import run_study
    from harness.tune.study import load_study

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.existing:
        args.out = args.existing
        spec = load_study(args.existing / "study.yaml")
        summary = {"finished": "?", "final": list((args.existing / "final").glob("*"))}
        t_synth = t_study = t_report = float("nan")
        data = spec.data.dir
        return report_rows(args, spec, summary, data, t_synth, t_study, t_report)
    data = args.data
    t_synth = 0.0
    if data is None:
        from harness.data.synth import synthesize

        data = args.out.parent / f"{args.out.name}-data"
        t0 = time.perf_counter()
        synthesize(data, n_images=args.images, size=256, seed=0)
        t_synth = time.perf_counter() - t0
    spec = load_study(args.study, _overrides(args.overrides))
    t0 = time.perf_counter()
    summary = run_study(spec, args.out, data_dir=data)
    t_study = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_report([args.out])
    t_report = time.perf_counter() - t0
    return report_rows(args, spec, summary, data, t_synth, t_study, t_report)


def report_rows(args, spec, summary, data, t_synth: float, t_study: float, t_report: float) -> None:
    import optuna

    from harness.tune.bookkeeping import load_studies, open_storage
    from harness.tune.paths import StudyPaths

    studies = load_studies(spec, open_storage(StudyPaths(args.out).storage_url))
    rows = []
    for t in (t for s in studies.values() for t in s.trials):
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        run_dir = StudyPaths(args.out).trial_of(t.user_attrs)
        stages = [json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")]
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
        inner = json.loads((run_dir / "metrics.json").read_text())
        run = json.loads((run_dir / "run.json").read_text())  # time spent inside run_trial
        trained = sum(not s["cached"] for s in stages)
        train_s = sum(s["seconds"] for s in stages if not s["cached"])
        started = json.loads((run_dir / "trial.json").read_text())["started"]  # worker began the trial
        in_worker = t.datetime_complete.timestamp() - started
        rows.append({"number": t.number, "pipeline": t.user_attrs["pipeline"], "wall": wall, "trained": trained,
                     "train_s": train_s, "inner": run["seconds"], "worker": in_worker,
                     "queued": wall - in_worker, "bacc": inner.get("balanced_accuracy")})
    hits = [r["wall"] for r in rows if r["trained"] == 0]
    misses = [r["wall"] for r in rows if r["trained"] > 0]
    overhead = [r["worker"] - r["inner"] for r in rows]
    print(f"\n## Study {spec.name} on {data}\n")
    print(f"- synthetic data: {t_synth:.1f} s; study (search + final runs): {t_study:.1f} s; report: {t_report:.1f} s")
    print(f"- total: {t_synth + t_study + t_report:.1f} s "
          f"({summary['finished']} trials, {len(summary['final'])} final runs)")
    print(f"- trial wall time: median {statistics.median([r['wall'] for r in rows]):.1f} s "
          f"over {len(rows)} complete trials")
    print(f"- per-trial overhead in the worker (trial start -> Optuna complete, minus time inside run_trial: "
          f"W&B init/finish, config, reports): median {statistics.median(overhead):.1f} s, max {max(overhead):.1f} s")
    print(f"- time a trial waited for a free slot after Optuna asked for it: median "
          f"{statistics.median([r['queued'] for r in rows]):.1f} s")
    if hits and misses:
        print(f"- all stages cached: median {statistics.median(hits):.1f} s ({len(hits)} trials) vs trained: "
              f"median {statistics.median(misses):.1f} s ({len(misses)} trials) -> saving "
              f"{statistics.median(misses) - statistics.median(hits):.1f} s a trial")
    print("\n| trial | pipeline | wall s | queued s | in worker s | in run_trial s | stages trained | training s "
          "| val BAcc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['number']} | {r['pipeline']} | {r['wall']:.1f} | {r['queued']:.1f} | {r['worker']:.1f} | "
              f"{r['inner']:.1f} | {r['trained']} | {r['train_s']:.1f} | {r['bacc']:.3f} |")


if __name__ == "__main__":
    main()
