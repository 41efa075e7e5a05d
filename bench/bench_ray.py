"""What the study machinery costs per trial: N no-op trials through the real study runner, 2 workers.

    .venv/bin/python bench/bench_ray.py                 # 12 trials of the no-op pipeline, 2 CPUs
    .venv/bin/python bench/bench_ray.py --trials 24

The trials are real search trials of a study of pipeline ``noop`` (``bench/noop_pipeline.py``, a plug-in
that trains nothing and predicts an empty mask): :func:`harness.tune.runner.run_study` with the TPE
searcher (one Optuna study), stage-aligned ASHA, the study's queue, Optuna bookkeeping, W&B offline
runs, run directories and trial clocks, on a 24-image dataset, one CPU per trial on a local Ray with 2
CPUs, final runs off. The same no-op is also called N times in this process (``run_trial`` on the same
configs, after one untimed call, no W&B), and

    ray_overhead_s_per_trial = (run_study wall - N x median plain call) / N

Ray start-up is not in it: ``ray.init`` runs before ``run_study`` and is reported on its own
(``raw.ray_init_s``, and ``raw.overhead_with_init_s_per_trial`` with it). What is in it: the driver's
data preparation and Optuna set-up, Tune's experiment start and end, each worker's first trial
(process start, imports of the training stack, W&B's first init: ``raw.cold_first_trial_s``), and every
trial's W&B run, reports and hand-over. Goal <= 1.0 s per trial.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import goal, write_result  # noqa: E402

HERE = Path(__file__).resolve().parent
NOOP = HERE / "noop_pipeline.py"


def study_spec(trials: int, data: Path):
    from harness.tune.study import StudySpec

    return StudySpec.model_validate({
        "name": "bench-ray", "plugins": [str(NOOP)], "pipelines": ["noop"], "base": {"noop": "noop"},
        "search_space": {"params": {"eval.mask_threshold": {"type": "float", "low": 0.3, "high": 0.7}}},
        "trials": trials, "sampler": "tpe", "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpu": 1}, "final": {"enabled": False}, "wandb": {"enabled": True, "mode": "offline"},
        "data": {"split": "study", "val_fraction": 0.25, "test_fraction": 0.25, "dir": str(data)}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (= workers, one CPU per trial)")
    args = ap.parse_args()
    t0 = time.time()
    os.environ.setdefault("WANDB_MODE", "offline")
    logging.basicConfig(level=logging.WARNING)

    import json

    import ray

    from harness.pipelines.run import run_trial
    from harness.testing.datasets import make_dataset
    from harness.tune.runner import run_study
    from harness.tune.tuner import init_ray

    work = Path(tempfile.mkdtemp(prefix="harness-bench-ray-"))
    data = make_dataset(work / "data", n=24, size=48, images_per_patient=2).root
    spec = study_spec(args.trials, data)

    ray.shutdown()
    started = time.perf_counter()
    init_ray(None, {"num_cpus": args.cpus, "num_gpus": 0})
    ray_init_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        summary = run_study(spec, work / "study", data_dir=data)
        study_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    if summary["finished"] != args.trials:
        raise SystemExit(f"error: {summary['finished']} of {args.trials} trials finished: {summary['states']}")

    configs = [json.loads((d / "trial.json").read_text()) for d in sorted((work / "study" / "trials").iterdir())]
    clocks = [c.get("clock", {}) for c in configs]
    plain = []
    for k in range(args.trials + 1):  # the first call imports and warms up: untimed
        config = spec.run_config("noop", {"eval.mask_threshold": 0.3 + 0.4 * k / args.trials}, data)
        t = time.perf_counter()
        run_trial(config, work / "plain" / str(k), data_dir=data, store_root=work / "store", subsets=("val",),
                  progress=False, check_data=False)
        if k:
            plain.append(time.perf_counter() - t)
    plain_s = statistics.median(plain)
    per_trial = (study_s - args.trials * plain_s) / args.trials
    session = json.loads((work / "study" / "timings.json").read_text())["sessions"][-1]
    cold = [c["ended"] - c["entered"] for c in clocks if c.get("warm") is False]
    warm = [c["ended"] - c["entered"] for c in clocks if c.get("warm")]
    raw = {
        "trials": args.trials, "workers": args.cpus, "ray_init_s": round(ray_init_s, 2),
        "run_study_s": round(study_s, 2), "tune_session_s": round(session["ended"] - session["started"], 2),
        "plain_call_s": [round(p, 4) for p in plain], "plain_call_median_s": round(plain_s, 4),
        "overhead_with_init_s_per_trial": round((study_s + ray_init_s - args.trials * plain_s) / args.trials, 3),
        "cold_first_trial_s": [round(c, 2) for c in cold],
        "cold_imports_s": [round(c["imported"] - c["entered"], 2) for c in clocks if c.get("warm") is False],
        "cold_wandb_init_s": [round(c["tracker_ready"] - c["imported"], 2) for c in clocks if c.get("warm") is False],
        "warm_trial_in_worker_median_s": round(statistics.median(warm), 3) if warm else None,
        "warm_wandb_init_median_s": round(statistics.median(
            [c["tracker_ready"] - c["imported"] for c in clocks if c.get("warm")]), 3) if warm else None,
        "load": os.getloadavg(), "work_dir": str(work)}
    print(f"ray.init {ray_init_s:.1f} s (not counted); run_study {study_s:.1f} s for {args.trials} trials on "
          f"{args.cpus} workers; plain no-op call {plain_s:.3f} s; cold first trials {raw['cold_first_trial_s']} s")
    write_result("bench_ray", summary={"ray_overhead_s_per_trial": round(per_trial, 3)}, raw=raw, started=t0,
                 goals={"ray_overhead_s_per_trial": goal(round(per_trial, 3), 1.0, "<=")})


if __name__ == "__main__":
    main()
