"""What a study will cost, before it runs: ``harness study plan STUDY [--data DIR] [--json]``.

The estimate is a sum of stage trainings, evaluations and per-trial overheads, divided among the
trials that run at once:

* **trials** per pipeline from the budget (:func:`harness.tune.bookkeeping.trial_budgets`);
* **stage trainings**: a stage trains once per distinct value of the parameters that reach its config
  section (``classifier.*`` for a classifier stage, ...), capped by the pipeline's trials; every other
  trial of that stage is a **cache hit** (evaluation-only knobs, repeated draws). Final runs train
  again for seeds the search did not use (``levels``: once per seed and training configuration);
* **per-epoch seconds** of each stage: from an earlier study's stage records (``--calibrate
  STUDY_DIR``: the median epoch time and the epochs early stopping actually ran) or from a short probe
  on this machine (a few training steps of the stage's real model at its batch and image size, one
  thread per trial as studies run), times the planned epochs;
* **concurrency** from the per-trial resources and this machine's CPUs/GPUs (``max_concurrent`` caps);
* **overheads** measured for Ray Tune + Optuna here (stack-facts): Ray start, ~1.7 s a trial, ~4 s a
  W&B run, a few seconds of evaluation a trial.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.tune.space import CategoricalParam
from harness.tune.study import StudySpec

RAY_START_S = 3.0
TRIAL_OVERHEAD_S = 1.7
WANDB_S = 4.0
EVAL_S = 2.0
VALIDATION_FACTOR = 1.15  # an epoch = training steps + validation pass


@dataclass
class StagePlan:
    pipeline: str
    stage: str
    epochs: int
    epoch_seconds: float
    source: str  # "probe" or "records"
    search_trainings: int
    search_cache_hits: int
    final_trainings: int


@dataclass
class Plan:
    study: str
    trials: dict[str, int]
    final_runs: int
    resources: dict[str, float]
    concurrency: int
    stages: list[StagePlan] = field(default_factory=list)
    search_seconds: float = 0.0
    final_seconds: float = 0.0
    estimated_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _distinct(spec: StudySpec, pipeline: str, section: str) -> float:
    """How many distinct training configurations the space offers a stage (inf: continuous)."""
    n = 1.0
    for name, p in spec.search_space.params.items():
        if not p.applies(pipeline) or not name.startswith(section + "."):
            continue
        if isinstance(p, CategoricalParam):
            n *= len(p.choices)
        elif getattr(p, "step", None) is not None or p.type == "int":
            n *= len(p.grid())
        else:
            return math.inf
    for group in spec.search_space.simplex:
        if group.applies(pipeline) and any(f.startswith(section + ".") for f in group.fields):
            return math.inf
    return n


def _records(calibrate: Path | None) -> dict[str, tuple[float, float]]:
    """Stage name -> (median seconds per epoch, mean epochs run) from a study's stage cache."""
    if calibrate is None:
        return {}
    seconds: dict[str, list[float]] = {}
    epochs: dict[str, list[int]] = {}
    for path in Path(calibrate, "stage_cache").glob("*/stage.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        raw = [h.get("seconds") for h in rec.get("history", []) if isinstance(h, dict)]
        hist = [float(s) for s in raw if isinstance(s, int | float)]
        if hist:
            seconds.setdefault(str(rec.get("stage")), []).extend(hist)
            epochs.setdefault(str(rec.get("stage")), []).append(len(hist))
    return {k: (statistics.median(v), statistics.fmean(epochs[k])) for k, v in seconds.items()}


def probe_epoch_seconds(config: Any, stage: Any, n_train: int, threads: int = 1, steps: int = 3) -> float:
    """Seconds of one epoch of ``stage``: a few timed training steps of its real model on random data."""
    import torch

    from harness.pipelines.stages import STAGE_KINDS

    section = getattr(config, stage.section).model_copy(update={"pretrained": False})
    bs, size = section.optim.batch_size, section.image_size
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = STAGE_KINDS[stage.kind].build(section, stage.classes, config.data.channels).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(bs, config.data.channels, size, size)
        times = []
        for k in range(steps + 1):
            t0 = time.perf_counter()
            out = model(x)
            loss = sum(o.float().mean() for o in (out if isinstance(out, tuple | list) else (out,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if k:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times) * max(1, math.ceil(n_train / bs)) * VALIDATION_FACTOR


def _n_images(spec: StudySpec, data_dir: Path | None) -> tuple[int, float]:
    """(images, fraction with a lesion) of the dataset; the quickstart's synthetic set when unknown."""
    root = data_dir or spec.data.dir
    if root and (Path(root) / "training_metadata.xlsx").is_file():
        try:
            from harness.data.check import load_index

            labels = load_index(Path(root), None, check=False).labels()
            return len(labels), float((labels != 2).mean()) if len(labels) else 2 / 3
        except Exception:  # noqa: BLE001 - a plan never fails on the data; the run's check reports it
            pass
    return 300, 2 / 3


def _concurrency(spec: StudySpec) -> int:
    cpus = os.cpu_count() or 1
    per = spec.resources.per_trial(False)
    n = max(1, int(cpus // max(per["cpu"], 1e-9)))
    return min(n, spec.max_concurrent) if spec.max_concurrent else n


def plan_study(spec: StudySpec, data_dir: Path | None = None, calibrate: Path | None = None) -> Plan:
    """The estimate described in the module docstring."""
    from harness.pipelines.registry import get_pipeline
    from harness.tune.bookkeeping import trial_budgets

    budgets = trial_budgets(spec)
    n_images, lesion = _n_images(spec, data_dir)
    n_train = max(1, round(n_images * (1 - spec.data.val_fraction - spec.data.test_fraction)))
    records = _records(calibrate)
    threads = max(1, int(spec.resources.cpu))
    seeds = list(spec.final.seeds) if spec.final.enabled else []
    final_runs_per_pipeline = len(seeds)
    if spec.final.enabled and spec.final.mode == "levels":
        from harness.tune.levels import plan as level_plan

        planned = level_plan(spec)
        final_runs = len(planned)
    else:
        planned, final_runs = [], final_runs_per_pipeline * len(spec.pipelines)
    out = Plan(study=spec.name, trials=budgets, final_runs=final_runs, resources=spec.resources.per_trial(False),
               concurrency=_concurrency(spec))
    search_work = final_work = 0.0
    for p in spec.pipelines:
        config = spec.run_config(p, {}, data_dir)
        for st in get_pipeline(p).stages:
            epochs = int(getattr(config, st.section).optim.epochs)
            if st.name in records:
                sec, ran = records[st.name]
                source, epochs = "records", int(round(min(epochs, ran)))
            else:
                seen = n_train if st.train_on == "all" else max(1, round(n_train * lesion))
                sec, source = probe_epoch_seconds(config, st, seen, threads), "probe"
            trainings = int(min(budgets[p], _distinct(spec, p, st.section)))
            base_seed = config.runtime.seed
            if planned:
                configs = {json.dumps({k: v for k, v in r.overrides.items() if k.startswith(st.section + ".")},
                                      sort_keys=True) for r in planned if r.pipeline == p}
                final_tr = len(configs) * len([s for s in seeds if s != base_seed]) + (len(configs) - 1) * (
                    base_seed in seeds)
            else:
                final_tr = len([s for s in seeds if s != base_seed])
            out.stages.append(StagePlan(p, st.name, epochs, sec, source, trainings, budgets[p] - trainings, final_tr))
            search_work += trainings * epochs * sec
            final_work += final_tr * epochs * sec
    per_trial = TRIAL_OVERHEAD_S + EVAL_S + (WANDB_S if spec.wandb.enabled else 0.0)
    n_trials = sum(budgets.values())
    k = out.concurrency
    out.search_seconds = (search_work + n_trials * per_trial) / min(k, max(n_trials, 1))
    out.final_seconds = (final_work + final_runs * per_trial) / min(k, max(final_runs, 1)) if final_runs else 0.0
    out.estimated_seconds = RAY_START_S + out.search_seconds + out.final_seconds
    return out


def format_plan(p: Plan) -> str:
    lines = [f"study {p.study}: {sum(p.trials.values())} trials ({', '.join(f'{k} {v}' for k, v in p.trials.items())})"
             f", {p.final_runs} final runs; {p.concurrency} at once ({p.resources} per trial)"]
    lines.append(f"  {'pipeline':<9}{'stage':<18}{'epochs':>7}{'s/epoch':>9}{'from':>8}{'trains':>8}{'cache hits':>11}"
                 f"{'final trains':>13}")
    for s in p.stages:
        lines.append(f"  {s.pipeline:<9}{s.stage:<18}{s.epochs:>7}{s.epoch_seconds:>9.2f}{s.source:>8}"
                     f"{s.search_trainings:>8}{s.search_cache_hits:>11}{s.final_trainings:>13}")
    lines.append(f"  estimated: search {p.search_seconds / 60:.1f} min + final {p.final_seconds / 60:.1f} min = "
                 f"{p.estimated_seconds / 60:.1f} min (estimated_seconds {p.estimated_seconds:.0f})")
    return "\n".join(lines)
