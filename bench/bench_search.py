"""Search efficiency: what TPE + stage-aligned ASHA finds with 25 % of a grid's compute, against the grid.

    .venv/bin/python bench/bench_search.py                      # defaults: <= 4 min on 2 quiet cores
    .venv/bin/python bench/bench_search.py --seeds 42 43 44 45  # several searches against one grid

**Axis.** ``segmenter.lr`` of pipeline B (tiny-b preset), 10 levels 0.001..0.010: a training knob with a
real effect (too low: the U-Net++ has not learnt in 16 short epochs; too high: unstable), on 200
synthetic images (:func:`harness.data.synth.synthesize`, half of them for validation), the segmenter at
32 px, seeds fixed. The objective is validation ``dice_mean`` (Dice of the lesion images), which in B
comes from the segmenter alone: B's ROI classifier trains on ground-truth crops
(``roi.train_crops: ground_truth``), does not depend on the axis, and is one 1-epoch stage that each
study trains once (it is counted, in both arms alike).

**Arms.** Both run through the harness's own study machinery (``harness.tune.runner.run_study``: Ray
Tune + Optuna, W&B off, one thread per trial), each with a ``StudySpec`` built here:

* grid: ``sampler: grid``, FIFO, every level trained in full (``patience`` above ``epochs``: no early
  stopping), two trials at once;
* search: ``sampler: tpe``, ``scheduler: asha`` (the stage-aligned ASHA; grace 1 epoch, reduction
  factor 3 as in the Hyperband/ASHA papers: rungs at segmenter epochs 1, 3 and 9), one trial at a time,
  so that the run is deterministic (with two at once, ASHA's cut-offs and TPE's draws depend on the
  order in which results arrive).

**Compute** is counted in trained epochs: an epoch hook in every trial appends each epoch to a ledger
(epochs replayed from the stage cache are marked and not counted). Training is deterministic on CPU,
so the count does not depend on other load on the machine; wall seconds are reported too. Nothing is
shared between the arms but the dataset and its decoded-image cache: each study has its own stage
store, so a search trial that lands on a grid level trains it again (a shared store would make it free).
Within the search, the study's own store works as in any study: a level drawn again after it completed
is a cache hit (0 epochs), one drawn again after ASHA stopped it resumes after its last epoch.

**How the 25 % budget is enforced.** By the trial budget and ASHA's stopping. The grid costs
``G = levels x epochs + 1`` epochs (+ 1: the ROI classifier). The search gets the largest trial count
whose expected cost fits ``0.25 G`` under a null model of ASHA that needs no data: every report's score
an independent uniform draw, trials one after the other, no repeated level (a Monte Carlo of the same
rule as Ray's ASHA; early trials pass rungs more often than 1/rf since a rung with few records has a low
cut-off). Here: 7 trials, 39.3 expected epochs of 40.25. ASHA's stops depend on the scores, so the
budget holds in expectation, not by construction: the measured fraction is reported as
``search_compute_fraction`` with its own goal (<= 0.25), and a run that overspends misses that goal
visibly instead of being cut short.

**Figures.** ``search_efficiency_ratio`` = best validation objective of the search's COMPLETE trials
(trials ASHA stopped are PRUNED and never ranked, as in harness.tune.bookkeeping.best_trials) / the
grid's best; with several ``--seeds`` (sampler seeds, one grid) the median. One search is one draw, so
``raw.replay`` also replays the search on the grid's recorded epoch curves (training is deterministic:
a search trial at a level reports exactly the grid's curve there) for 2000 random draw sequences with
the same budget and ASHA rule: the ratio's distribution at no training cost
(``search_replay_p_ratio_ge_0_98``), the same for other grace / reduction-factor settings
(``raw.replay.asha_settings``), and the replay of the real run's own draws, which must reproduce its
epochs and best score (``raw.replay.check``). ``raw.rank_correlation_with_final``: how well the stage
score at each rung ranks the levels' final objective (what ASHA relies on);
``search_replay_ratio_median`` is the replays' median ratio. The replays draw levels uniformly at random
(random search + ASHA, a floor for TPE); the real run uses the harness's TPE, which starts modelling after a
third of a pipeline's trial budget (at least 2 trials; ``harness.tune.tuner.startup_trials``; before, Optuna's
default of 10 random start-up trials made every budget under 10 trials random search).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import goal, write_result  # noqa: E402

PIPELINE = "b"
STAGE = "segmenter3"
AXIS = "segmenter.lr"
OBJECTIVE = "dice_mean"
BUDGET = 0.25
REPLAYS = 2000


@dataclass(frozen=True)
class EpochLedger:
    """Epoch hook: one JSON line per epoch (trained, or replayed from the stage cache) appended to ``path``.

    Defined in the script: Ray pickles ``__main__`` classes by value, so its workers need not import it.
    """

    path: str

    def __call__(self, stage: str, record: dict[str, Any]) -> None:
        line = {"stage": stage, "epoch": int(record["epoch"]), "seconds": float(record.get("seconds", 0.0)),
                "val_metric": float(record["val_metric"]), "replayed": bool(record.get("replayed", False)),
                "pid": os.getpid(), "cpu": time.process_time()}
        with open(self.path, "a", encoding="utf-8") as f:  # one short append per line
            f.write(json.dumps(line) + "\n")


def read_ledger(path: Path) -> dict[str, Any]:
    """Trained epochs (replays excluded), their wall seconds, and the CPU seconds of the epochs that follow
    another epoch of the same stage in the same worker (a quiet machine's epoch time), per stage too."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    trained = [r for r in rows if not r["replayed"]]
    per_stage: dict[str, int] = {}
    for r in trained:
        per_stage[r["stage"]] = per_stage.get(r["stage"], 0) + 1
    cpu, last = [], {}
    for r in trained:
        prev = last.get(r["pid"])
        if prev and prev["stage"] == r["stage"] and prev["epoch"] + 1 == r["epoch"]:
            cpu.append(r["cpu"] - prev["cpu"])
        last[r["pid"]] = r
    return {"epochs": len(trained), "replayed": len(rows) - len(trained), "per_stage": per_stage,
            "epoch_seconds": round(sum(r["seconds"] for r in trained), 2),
            "epoch_cpu_median": round(statistics.median(cpu), 3) if cpu else None}


# ---------------------------------------------------------------------------------------------
# ASHA arithmetic and replay (the rule of ray.tune.schedulers.async_hyperband._Bracket, one bracket,
# stop_last_trials=False, as harness.tune.scheduler builds it per stage)


def asha_rungs(grace: int, rf: float, max_t: int) -> list[int]:
    """Ray's milestones for one bracket, ascending: grace * rf**k for k < int(log(max_t/grace)/log(rf) + 1)."""
    n = int(math.log(max_t / grace) / math.log(rf) + 1)
    return [int(grace * rf**k) for k in range(n)]


def expected_search_epochs(trials: int, grace: int, rf: float, epochs: int, extra_epochs: int = 1,
                           sims: int = 2000) -> float:
    """Mean epochs of ``trials`` sequential ASHA trials under a null model: every report's score is an
    independent uniform draw (nothing carries over between rungs) and no level repeats. Early trials
    are promoted more often than 1/rf (a rung with few records has a low cut-off, an empty one none),
    which the asymptotic ``1/rf`` per rung misses. ``extra_epochs``: the ROI classifier, paid once."""
    rng = np.random.default_rng(0)
    total = 0
    for _ in range(sims):
        bracket, paid = Bracket(grace, rf, epochs), 0
        completed = False
        for trial in range(trials):
            values = rng.random(epochs)
            for e in range(1, epochs + 1):
                paid += 1
                if bracket.stop(trial, e, float(values[e - 1])):
                    break
            else:
                paid += 0 if completed else extra_epochs
                completed = True
        total += paid
    return total / sims


def default_trials(budget_epochs: float, grace: int, rf: float, epochs: int) -> int:
    """Largest trial count whose null-model expected cost (:func:`expected_search_epochs`) fits the budget."""
    n = 1
    while n < 100 and expected_search_epochs(n + 1, grace, rf, epochs) <= budget_epochs:
        n += 1
    return n


def percentile(values: list[float], q: float) -> float:
    """numpy's default (linear) percentile of a short list, without numpy's per-call overhead."""
    xs = sorted(values)
    pos = q / 100 * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class Bracket:
    """One ASHA bracket: rungs of recorded values; a result below a rung's (1 - 1/rf) quantile stops."""

    def __init__(self, grace: int, rf: float, max_t: int):
        self.rf = rf
        self.rungs: list[tuple[int, dict[int, float]]] = [(m, {}) for m in reversed(asha_rungs(grace, rf, max_t))]

    def stop(self, trial: int, t: int, value: float) -> bool:
        for milestone, recorded in self.rungs:
            if t >= milestone and trial in recorded:
                return False
            if t < milestone:
                continue
            cutoff = percentile(list(recorded.values()), (1 - 1 / self.rf) * 100) if recorded else None
            recorded[trial] = value
            return cutoff is not None and value < cutoff
        return False


def replay(curves: dict[float, list[float]], finals: dict[float, float], draws: list[float], *, grace: int,
           rf: float, extra_epochs: int = 1) -> dict[str, Any]:
    """A sequential search over ``draws`` (levels) with ASHA on the recorded per-epoch ``curves``.

    A level drawn after it completed is a cache hit (its epochs are replayed: recorded, never stopped,
    not paid); one drawn after ASHA stopped it resumes after its last trained epoch. ``extra_epochs``
    (the ROI classifier) are paid once, by the first trial that completes.
    """
    epochs = len(next(iter(curves.values())))
    bracket = Bracket(grace, rf, epochs)
    progress: dict[float, int] = {}
    paid, best, extra_paid, states = 0, -math.inf, False, []
    for trial, level in enumerate(draws):
        start = progress.get(level, 0)
        if start >= epochs:
            for e, v in enumerate(curves[level], 1):
                bracket.stop(trial, e, v)
            states.append("cached")
            best = max(best, finals[level])
            continue
        stopped = False
        for e in range(start + 1, epochs + 1):
            paid += 1
            progress[level] = e
            if bracket.stop(trial, e, curves[level][e - 1]):
                stopped = True
                break
        if stopped:
            states.append(f"stopped@{progress[level]}")
            continue
        if not extra_paid:
            paid, extra_paid = paid + extra_epochs, True
        states.append("complete")
        best = max(best, finals[level])
    return {"best": best, "epochs": paid, "states": states}


def replay_distribution(curves: dict[float, list[float]], finals: dict[float, float], trials: int, *, grace: int,
                        rf: float, grid_epochs: int, grid_best: float, n: int = REPLAYS) -> dict[str, Any]:
    """The ratio and compute fraction over ``n`` uniform random draw sequences (what TPE's start-up does)."""
    rng = np.random.default_rng(0)
    levels = sorted(curves)
    ratios, fractions = [], []
    for _ in range(n):
        draws = [levels[i] for i in rng.integers(0, len(levels), size=trials)]
        r = replay(curves, finals, draws, grace=grace, rf=rf)
        ratios.append(r["best"] / grid_best if math.isfinite(r["best"]) else 0.0)
        fractions.append(r["epochs"] / grid_epochs)
    q = lambda xs, p: round(float(np.percentile(xs, p)), 4)  # noqa: E731
    return {"draws": n, "ratio_median": q(ratios, 50), "ratio_p10": q(ratios, 10), "ratio_p90": q(ratios, 90),
            "p_ratio_ge_0.98": round(float(np.mean(np.asarray(ratios) >= 0.98)), 4),
            "fraction_median": q(fractions, 50), "fraction_p90": q(fractions, 90),
            "p_fraction_le_0.25": round(float(np.mean(np.asarray(fractions) <= BUDGET)), 4)}


def settings_table(curves: dict[float, list[float]], finals: dict[float, float], *, budget: float,
                   grid_epochs: int, grid_best: float) -> list[dict[str, Any]]:
    """The replay for other ASHA settings, each with its own null-model trial count (what-if, no training)."""
    epochs = len(next(iter(curves.values())))
    rows = []
    for grace in (1, 2, 4):
        for rf in (2.0, 3.0, 4.0):
            n = default_trials(budget, grace, rf, epochs)
            rows.append({"grace": grace, "rf": rf, "rungs": asha_rungs(grace, rf, epochs), "trials": n,
                         **replay_distribution(curves, finals, n, grace=grace, rf=rf, grid_epochs=grid_epochs,
                                               grid_best=grid_best, n=500)})
    return rows


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation (no ties expected between float scores)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


# ---------------------------------------------------------------------------------------------
# The two studies


def levels(low: float, high: float, step: float) -> list[float]:
    n = int(math.floor((high - low) / step + 1e-9)) + 1
    return [round(low + i * step, 10) for i in range(n)]


def study_spec(name: str, args: argparse.Namespace, *, sampler: str, trials: int | None, seed: int,
               concurrent: int) -> Any:
    from harness.tune.study import StudySpec

    raw: dict[str, Any] = {
        "name": name, "pipelines": [PIPELINE], "base": {PIPELINE: "tiny-b"},
        "overrides": {"segmenter.image_size": args.image_size, "segmenter.optim.epochs": args.epochs,
                      "segmenter.optim.patience": args.epochs + 1, "classifier.image_size": 32,
                      "classifier.optim.epochs": 1, "roi.train_crops": "ground_truth", "eval.tta": False,
                      "runtime.progress": "off"},
        "search_space": {"name": "segmenter_lr",
                         "params": {AXIS: {"type": "float", "low": args.low, "high": args.high, "step": args.step}}},
        "objectives": [{"metric": OBJECTIVE}], "sampler": sampler, "seed": seed,
        "scheduler": ({"type": "asha", "grace_period": args.grace, "reduction_factor": args.rf}
                      if sampler != "grid" else {"type": "fifo"}),
        "resources": {"cpu": 1, "gpu": 0}, "max_concurrent": concurrent, "final": {"enabled": False},
        "wandb": {"enabled": False},
        "data": {"split": "bench", "val_fraction": args.val_fraction, "test_fraction": 0.0}}
    if trials is not None:
        raw["trials"] = trials
    return StudySpec.model_validate(raw)


def run_arm(spec: Any, study_dir: Path, data: Path) -> dict[str, Any]:
    """Run one study with the epoch ledger; its record (:func:`read_arm`) and wall seconds."""
    from harness.tune.runner import run_study

    ledger = study_dir.parent / f"{study_dir.name}.ledger.jsonl"
    ledger.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_study(spec, study_dir, data_dir=data, epoch_hooks=[EpochLedger(str(ledger))], ray_init={"num_cpus": 2})
    seconds = time.perf_counter() - t0
    (study_dir.parent / f"{study_dir.name}.seconds").write_text(f"{seconds:.1f}")
    return read_arm(spec, study_dir)


def read_arm(spec: Any, study_dir: Path) -> dict[str, Any]:
    """A finished study's trials in order (level, state, objective, stage curve), its ledger and wall seconds."""
    import optuna

    from harness.tune.bookkeeping import load_studies, open_storage
    from harness.tune.paths import StudyPaths

    paths = StudyPaths(study_dir)
    study = load_studies(spec, open_storage(paths.storage_url))[PIPELINE]
    trials = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        complete = t.state == optuna.trial.TrialState.COMPLETE and t.values
        record = (paths.trial_of(t.user_attrs) or study_dir) / "stages" / f"{STAGE}.json"
        curve = [h["val_metric"] for h in json.loads(record.read_text())["history"]] if record.is_file() else None
        trials.append({"number": t.number, "state": t.state.name, AXIS: t.user_attrs.get("overrides", {}).get(AXIS),
                       OBJECTIVE: t.values[0] if complete else None, "curve": curve})
    scores = [t[OBJECTIVE] for t in trials if t[OBJECTIVE] is not None and math.isfinite(t[OBJECTIVE])]
    seconds = study_dir.parent / f"{study_dir.name}.seconds"
    return {"trials": trials, "best": max(scores) if scores else math.nan,
            "seconds": float(seconds.read_text()) if seconds.exists() else math.nan,
            **read_ledger(study_dir.parent / f"{study_dir.name}.ledger.jsonl")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200, help="synthetic images (written at 128 px)")
    ap.add_argument("--val-fraction", type=float, default=0.5)
    ap.add_argument("--image-size", type=int, default=32, help="segmenter input size (a multiple of 32)")
    ap.add_argument("--epochs", type=int, default=16, help="segmenter epochs of a full trial")
    ap.add_argument("--low", type=float, default=0.001)
    ap.add_argument("--high", type=float, default=0.010)
    ap.add_argument("--step", type=float, default=0.001)
    ap.add_argument("--grace", type=int, default=1, help="ASHA grace period (epochs into the segmenter stage)")
    ap.add_argument("--rf", type=float, default=3.0, help="ASHA reduction factor")
    ap.add_argument("--trials", type=int, help="search trial budget (default: the largest whose expected cost "
                    "fits 25 %% of the grid, see above)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42], help="sampler seeds, one search each")
    ap.add_argument("--out", type=Path, help="work directory, kept (default: a temporary one, removed)")
    ap.add_argument("--grid-from", type=Path, metavar="OUT",
                    help="reuse the data and the grid of an earlier run's --out (same settings) instead of training it")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    t_start = time.time()

    import ray

    from harness.data.synth import synthesize

    work = args.out or Path(tempfile.mkdtemp(prefix="bench_search_"))
    work.mkdir(parents=True, exist_ok=True)
    grid_levels = levels(args.low, args.high, args.step)
    planned = len(grid_levels) * args.epochs + 1
    budget = BUDGET * planned
    trials = args.trials or default_trials(budget, args.grace, args.rf, args.epochs)
    print(f"axis {AXIS}: {len(grid_levels)} levels x {args.epochs} epochs (+1 ROI classifier epoch) = {planned}; "
          f"search budget {budget:.1f} epochs -> {trials} trials (ASHA grace {args.grace}, rf {args.rf:g}, rungs "
          f"{asha_rungs(args.grace, args.rf, args.epochs)}, expected "
          f"{expected_search_epochs(trials, args.grace, args.rf, args.epochs):.1f} epochs)", flush=True)
    load = os.getloadavg()
    try:
        grid_spec = study_spec("bench_grid", args, sampler="grid", trials=None, seed=0, concurrent=2)
        synth_s = 0.0
        if args.grid_from:
            data = args.grid_from / "data"
            grid = read_arm(grid_spec, args.grid_from / "grid")
            if sorted(t[AXIS] for t in grid["trials"]) != grid_levels or any(
                    len(t["curve"] or []) != args.epochs for t in grid["trials"]):
                ap.error(f"--grid-from {args.grid_from}: its grid has other levels or epochs than these settings")
        else:
            data = work / "data"
            t0 = time.perf_counter()
            synthesize(data, n_images=args.images, size=128, seed=0)
            synth_s = time.perf_counter() - t0
            grid = run_arm(grid_spec, work / "grid", data)
        print(f"grid: best {OBJECTIVE} {grid['best']:.4f}, {grid['epochs']} epochs, {grid['seconds']:.0f} s",
              flush=True)
        searches = []
        for seed in args.seeds:
            s = run_arm(study_spec(f"bench_search_{seed}", args, sampler="tpe", trials=trials, seed=seed,
                                   concurrent=1), work / f"search-{seed}", data)
            s.update(seed=seed, ratio=s["best"] / grid["best"], compute_fraction=s["epochs"] / grid["epochs"])
            searches.append(s)
            print(f"search seed {seed}: best {s['best']:.4f} -> ratio {s['ratio']:.4f}, {s['epochs']} epochs "
                  f"({s['compute_fraction']:.1%} of the grid), {s['seconds']:.0f} s", flush=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)

    curves = {t[AXIS]: t["curve"] for t in grid["trials"]}
    finals = {t[AXIS]: t[OBJECTIVE] for t in grid["trials"]}
    checks = []
    for s in searches:
        r = replay(curves, finals, [t[AXIS] for t in s["trials"]], grace=args.grace, rf=args.rf)
        checks.append({"seed": s["seed"], "replayed_epochs": r["epochs"], "measured_epochs": s["epochs"],
                       "replayed_best": r["best"], "measured_best": s["best"], "states": r["states"],
                       "matches": r["epochs"] == s["epochs"] and math.isclose(r["best"], s["best"])})
    dist = replay_distribution(curves, finals, trials, grace=args.grace, rf=args.rf, grid_epochs=grid["epochs"],
                               grid_best=grid["best"])
    print(f"replay of {dist['draws']} random draw sequences: ratio median {dist['ratio_median']}, p10 "
          f"{dist['ratio_p10']}, P(ratio >= 0.98) {dist['p_ratio_ge_0.98']}; compute fraction median "
          f"{dist['fraction_median']}, P(<= 0.25) {dist['p_fraction_le_0.25']}; real runs reproduced: "
          f"{all(c['matches'] for c in checks)}", flush=True)

    table = settings_table(curves, finals, budget=budget, grid_epochs=grid["epochs"], grid_best=grid["best"])
    levels_sorted = sorted(curves)
    ranks = {e: round(spearman([curves[v][e - 1] for v in levels_sorted], [finals[v] for v in levels_sorted]), 3)
             for e in sorted({*asha_rungs(args.grace, args.rf, args.epochs), args.epochs})}
    print(f"rank correlation of the stage score at epoch e with the final objective over the levels: {ranks}")
    ratio = statistics.median(s["ratio"] for s in searches)
    fraction = statistics.median(s["compute_fraction"] for s in searches)
    summary = {"search_efficiency_ratio": round(ratio, 4), "search_compute_fraction": round(fraction, 4),
               "search_seconds_fraction": round(statistics.median(s["seconds"] for s in searches) / grid["seconds"], 4),
               "search_replay_p_ratio_ge_0_98": dist["p_ratio_ge_0.98"],
               "search_replay_ratio_median": dist["ratio_median"]}
    raw = {"axis": AXIS, "pipeline": PIPELINE, "objective": OBJECTIVE, "levels": grid_levels,
           "settings": {k: v for k, v in vars(args).items() if k != "out"}, "trials": trials,
           "budget_epochs": budget, "asha_rungs": asha_rungs(args.grace, args.rf, args.epochs),
           "expected_search_epochs": expected_search_epochs(trials, args.grace, args.rf, args.epochs),
           "synth_seconds": round(synth_s, 1), "loadavg_at_start": load, "loadavg_at_end": os.getloadavg(),
           "grid": grid, "searches": searches, "replay": {"check": checks, "distribution": dist,
                                                             "asha_settings": table},
           "rank_correlation_with_final": ranks,
           "levels_within_2pct": [v for v in levels_sorted if finals[v] >= 0.98 * grid["best"]]}
    write_result("bench_search", summary=summary, raw=raw, started=t_start,
                 goals={"search_efficiency_ratio": goal(ratio, 0.98, ">="),
                        "search_compute_fraction": goal(fraction, BUDGET, "<=")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
