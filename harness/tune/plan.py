"""What a study will cost, before it runs: ``harness study plan STUDY [--data DIR] [--json]``.

The estimate is a sum of stage trainings, evaluations and per-trial overheads, divided among the
trials that run at once:

* **trials** per pipeline from the budget (:func:`harness.tune.bookkeeping.trial_budgets`);
* **stage trainings**: a stage trains once per distinct value of the parameters that reach its config
  section (``classifier.*`` for a classifier stage, ...), capped by the pipeline's trials; every other
  trial of that stage is a **cache hit** (evaluation-only knobs, repeated draws). Final runs train
  again for seeds the search did not use (``levels``: once per seed and training configuration);
* **seconds of an epoch** of each stage from the **cost model** :data:`COST` (see :func:`trial_seconds`):
  a per-epoch constant plus seconds per training and per validation image, times ``(image_size /
  128) ** exponent``; the images an epoch sees follow the split, the stage's images (all, or lesion
  images only), the batch size and ``optim.max_steps_per_epoch``. The coefficients hold for the models
  they were fitted on (the tiny presets'); a stage with another model is **probed** (a few timed
  training steps of its real model at its batch and image size, one thread per trial as studies run)
  for its seconds per image, and ``--calibrate STUDY_DIR`` takes the median epoch time and the epochs
  early stopping actually ran from an earlier study's stage **records** instead;
* **per trial**: the cost model's fixed seconds (data, model builds, first-epoch warm-up) and its
  evaluation (inference per image and TTA view at each stage's size, plus metrics and mask files per
  image), and the Ray Tune + Optuna overheads measured here (stack-facts): Ray start, ~1.7 s a trial,
  ~4 s a W&B run;
* **concurrency** from the per-trial resources and this machine's CPUs/GPUs (``max_concurrent`` caps).

ASHA's early stopping is not modelled: search trainings are costed in full (an upper bound).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.tune.space import CategoricalParam
from harness.tune.study import StudySpec

RAY_START_S = 3.0
TRIAL_OVERHEAD_S = 1.7
WANDB_S = 4.0
REF_SIZE = 128
"""Image size (px) at which the cost model's per-image seconds hold."""


@dataclass(frozen=True)
class StageCost:
    """Seconds of one epoch of a stage kind: a constant, plus seconds per training image (forward,
    backward, augmentation, loading) and per validation image (forward, metric) at :data:`REF_SIZE`
    px; the per-image terms grow as ``(image_size / REF_SIZE) ** exponent`` (``exponent`` 0: the
    per-image seconds were measured at the stage's own size, as a probe does)."""

    epoch_s: float
    train_s_per_image: float
    val_s_per_image: float
    exponent: float

    def scale(self, image_size: int) -> float:
        return (image_size / REF_SIZE) ** self.exponent

    def epoch_seconds(self, n_train: int, n_val: int, image_size: int) -> float:
        """Seconds of one epoch that trains on ``n_train`` images and validates on ``n_val``."""
        return self.epoch_s + (self.train_s_per_image * n_train + self.val_s_per_image * n_val) * self.scale(image_size)

    def inference_seconds(self, n_images: int, image_size: int) -> float:
        """Seconds to predict ``n_images`` once (one TTA view): a validation pass without the epoch's constant."""
        return self.val_s_per_image * n_images * self.scale(image_size)


@dataclass(frozen=True)
class CostModel:
    """Coefficients of :func:`trial_seconds`: one :class:`StageCost` per stage kind, the model each
    kind's coefficients were fitted on (``models``: config fields of the stage's section), the fixed
    seconds of a trial and the evaluation seconds per image that do not depend on the model."""

    kinds: Mapping[str, StageCost]
    models: Mapping[str, Mapping[str, Any]]
    trial_s: float
    eval_s_per_image: float
    fitted: str

    def fits(self, kind: str, section: Any) -> bool:
        """Whether the coefficients of ``kind`` hold for a stage configured by ``section`` (same model)."""
        model = self.models.get(kind)
        return kind in self.kinds and model is not None and all(
            _plain(getattr(section, k, None)) == _plain(v) for k, v in model.items())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


# Fitted by bench/bench_scaling.py (it prints these lines; paste them over these to refit):
_CLASSIFIER_COST = StageCost(epoch_s=0.0213, train_s_per_image=0.00615, val_s_per_image=0.00217, exponent=2.03)
_SEGMENTER_COST = StageCost(epoch_s=0.0931, train_s_per_image=0.0298, val_s_per_image=0.00903, exponent=2.35)
_TRIAL_S, _EVAL_S_PER_IMAGE = 0, 0.00198
_FITTED = "bench/bench_scaling.py, tiny-a trials, 1 thread, CPU seconds, 2-core AMD EPYC, 2026-11-30"

_SEGMENTER_MODEL = {"arch": "unetplusplus", "encoder": "tu-mobilenetv3_small_050",
                    "decoder_channels": [32, 32, 16, 16, 8]}
COST = CostModel(
    kinds={"classifier": _CLASSIFIER_COST, "segmenter": _SEGMENTER_COST,
           "joint": _SEGMENTER_COST},  # the same U-Net++ with a small head on its encoder: not fitted separately
    models={"classifier": {"backbone": "test_resnet", "head_hidden": 128},
            "segmenter": _SEGMENTER_MODEL, "joint": _SEGMENTER_MODEL},
    trial_s=_TRIAL_S, eval_s_per_image=_EVAL_S_PER_IMAGE, fitted=_FITTED)
"""The cost model of :func:`trial_seconds`, fitted by ``bench/bench_scaling.py`` on this project's 2-core
development VM: tiny-a trials (classifier and U-Net++ at 128-320 px, 100-1000 images), one thread, CPU
seconds of the process (a quiet machine's wall time; on a loaded one, wall time was ~2x). Its largest
error on the measured trials was 13 % (``scaling_plan_max_rel_error``: the 320 px trial; 10 % or less on
the others). To refit (another machine, other library versions): ``python bench/bench_scaling.py`` prints
the four ``_CLASSIFIER_COST ... _FITTED`` lines above (also ``raw.cost_model.block`` of
``bench/results/bench_scaling.json``); paste them here. ``python bench/bench_scaling.py --refit
bench/results/bench_scaling.json`` fits an earlier measurement again; its ``raw.committed_max_rel_error``
says how far these constants are from what it measured."""


@dataclass(frozen=True)
class StageWork:
    """What one stage of a trial does: its cost, epochs, images per epoch (train, validation), input
    size, and how many images evaluation passes through it."""

    cost: StageCost
    epochs: int
    n_train: int
    n_val: int
    image_size: int
    n_eval: int

    @property
    def epoch_seconds(self) -> float:
        return self.cost.epoch_seconds(self.n_train, self.n_val, self.image_size)


def training_seconds(work: Sequence[StageWork]) -> float:
    """Seconds to train every stage of ``work`` (no cache hits)."""
    return sum(w.epochs * w.epoch_seconds for w in work)


def evaluation_seconds(cost: CostModel, work: Sequence[StageWork], n_eval: int, views: int) -> float:
    """Seconds of a trial besides training: fixed, inference through every stage (``views`` TTA views),
    and metrics and mask files for ``n_eval`` images."""
    inference = sum(views * w.cost.inference_seconds(w.n_eval, w.image_size) for w in work)
    return cost.trial_s + inference + cost.eval_s_per_image * n_eval


def trial_seconds(cost: CostModel, work: Sequence[StageWork], n_eval: int, views: int) -> float:
    """Seconds inside ``run_trial`` for a trial that trains every stage of ``work`` and evaluates
    ``n_eval`` images:  ``trial_s + sum_stages epochs * (epoch_s + (a * n_train + v * n_val) * r)
    + sum_stages views * v * n_eval_stage * r + eval_s_per_image * n_eval``, with ``r = (image_size /
    128) ** exponent`` and ``a``, ``v`` the stage kind's seconds per training and validation image."""
    return training_seconds(work) + evaluation_seconds(cost, work, n_eval, views)


def images_per_epoch(n: int, batch_size: int, max_steps: int | None) -> int:
    """Training images one epoch sees: full batches only when there is more than one batch (the
    loader drops the last partial one), at most ``max_steps`` batches."""
    seen = n if n <= batch_size else (n // batch_size) * batch_size
    return min(seen, max_steps * batch_size) if max_steps else seen


def split_counts(n_images: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) image counts of a split of ``n_images`` (as the split makes them, up to rounding)."""
    n_val, n_test = round(n_images * val_fraction), round(n_images * test_fraction)
    return max(1, n_images - n_val - n_test), n_val, n_test


@dataclass
class StagePlan:
    pipeline: str
    stage: str
    epochs: int
    epoch_seconds: float
    source: str  # "model" (cost model), "probe" or "records"
    search_trainings: int
    search_cache_hits: int
    final_trainings: int
    image_size: int = 0
    train_images: int = 0  # per epoch


@dataclass
class Plan:
    study: str
    trials: dict[str, int]
    final_runs: int
    resources: dict[str, float]
    concurrency: int
    stages: list[StagePlan] = field(default_factory=list)
    trial_seconds: dict[str, float] = field(default_factory=dict)  # per pipeline: evaluation + fixed + overheads
    search_seconds: float = 0.0
    final_seconds: float = 0.0
    estimated_seconds: float = 0.0
    cost_model: str = COST.fitted

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


def probe_stage_cost(config: Any, stage: Any, threads: int = 1, steps: int = 3) -> StageCost:
    """The cost of a stage whose model the cost model was not fitted on: a few timed training steps of its
    real model on random data at its batch and image size give the seconds per training image; the
    validation image and the epoch constant are scaled like the fitted kind's."""
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
    per_image = statistics.median(times) / bs
    fitted = COST.kinds.get(stage.kind, COST.kinds["classifier"])
    return StageCost(epoch_s=fitted.epoch_s, train_s_per_image=per_image,
                     val_s_per_image=per_image * fitted.val_s_per_image / fitted.train_s_per_image, exponent=0.0)


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


def _final_trainings(spec: StudySpec, planned: list[Any], pipeline: str, section: str, base_seed: int) -> int:
    """Stage trainings of the final runs: seeds the search did not use (``levels``: per training configuration)."""
    seeds = list(spec.final.seeds) if spec.final.enabled else []
    if not planned:
        return len([s for s in seeds if s != base_seed])
    configs = {json.dumps({k: v for k, v in r.overrides.items() if k.startswith(section + ".")}, sort_keys=True)
               for r in planned if r.pipeline == pipeline}
    return len(configs) * len([s for s in seeds if s != base_seed]) + (len(configs) - 1) * (base_seed in seeds)


def _stage_cost(cost: CostModel, config: Any, stage: Any, record: tuple[float, float] | None, n_train: int,
                n_val: int, threads: int) -> tuple[StageCost, str, int]:
    """(cost, its source, epochs) of one stage: the cost model when it was fitted on the stage's model, else a
    probe; an earlier study's records (median epoch seconds, epochs run) replace both when there are any."""
    section = getattr(config, stage.section)
    epochs = int(section.optim.epochs)
    fitted = cost.fits(stage.kind, section)
    if record is not None:
        seconds, ran = record
        kind = cost.kinds.get(stage.kind, cost.kinds["classifier"])
        ratio = kind.val_s_per_image / kind.train_s_per_image
        per_image = seconds / max(n_train + ratio * n_val, 1e-9)  # the epoch's seconds, spread over its images
        return StageCost(0.0, per_image, per_image * ratio, 0.0), "records", int(round(min(epochs, ran)))
    if fitted:
        return cost.kinds[stage.kind], "model", epochs
    return probe_stage_cost(config, stage, threads), "probe", epochs


def plan_study(spec: StudySpec, data_dir: Path | None = None, calibrate: Path | None = None,
               cost: CostModel = COST) -> Plan:
    """The estimate described in the module docstring."""
    from harness.pipelines.registry import get_pipeline
    from harness.tune.bookkeeping import trial_budgets

    budgets = trial_budgets(spec)
    n_images, lesion = _n_images(spec, data_dir)
    n_train, n_val, n_test = split_counts(n_images, spec.data.val_fraction, spec.data.test_fraction)
    records = _records(calibrate)
    threads = max(1, int(spec.resources.cpu))
    seeds = list(spec.final.seeds) if spec.final.enabled else []
    if spec.final.enabled and spec.final.mode == "levels":
        from harness.tune.levels import plan as level_plan

        planned = level_plan(spec)
        final_runs = len(planned)
    else:
        planned, final_runs = [], len(seeds) * len(spec.pipelines)
    out = Plan(study=spec.name, trials=budgets, final_runs=final_runs, resources=spec.resources.per_trial(False),
               concurrency=_concurrency(spec), cost_model=cost.fitted)
    overhead = TRIAL_OVERHEAD_S + (WANDB_S if spec.wandb.enabled else 0.0)
    search_work = final_work = search_eval = final_eval = 0.0
    for p in spec.pipelines:
        config = spec.run_config(p, {}, data_dir)
        views = len(config.eval.tta_views) if config.eval.tta else 1
        work, finals = [], []
        for st in get_pipeline(p).stages:
            section = getattr(config, st.section)
            share = 1.0 if st.train_on == "all" else lesion
            seen = images_per_epoch(max(1, round(n_train * share)), section.optim.batch_size,
                                    section.optim.max_steps_per_epoch)
            stage_cost, source, epochs = _stage_cost(cost, config, st, records.get(st.name), seen,
                                                     round(n_val * share), threads)
            w = StageWork(stage_cost, epochs, seen, round(n_val * share), section.image_size, round(n_val * share))
            work.append(w)
            finals.append(replace(w, n_eval=round((n_val + n_test) * share)))
            trainings = int(min(budgets[p], _distinct(spec, p, st.section)))
            final_tr = _final_trainings(spec, planned, p, st.section, config.runtime.seed)
            out.stages.append(StagePlan(p, st.name, epochs, w.epoch_seconds, source, trainings, budgets[p] - trainings,
                                        final_tr, section.image_size, seen))
            search_work += trainings * epochs * w.epoch_seconds
            final_work += final_tr * epochs * w.epoch_seconds
        per_trial = evaluation_seconds(cost, work, n_val, views) + overhead
        out.trial_seconds[p] = round(per_trial, 2)
        search_eval += budgets[p] * per_trial
        runs = len([r for r in planned if r.pipeline == p]) if planned else len(seeds)
        final_eval += runs * (evaluation_seconds(cost, finals, n_val + n_test, views) + overhead)
    n_trials = sum(budgets.values())
    k = out.concurrency
    out.search_seconds = (search_work + search_eval) / min(k, max(n_trials, 1))
    out.final_seconds = (final_work + final_eval) / min(k, max(final_runs, 1)) if final_runs else 0.0
    out.estimated_seconds = RAY_START_S + out.search_seconds + out.final_seconds
    return out


def format_plan(p: Plan) -> str:
    lines = [f"study {p.study}: {sum(p.trials.values())} trials ({', '.join(f'{k} {v}' for k, v in p.trials.items())})"
             f", {p.final_runs} final runs; {p.concurrency} at once ({p.resources} per trial)"]
    lines.append(f"  {'pipeline':<9}{'stage':<18}{'px':>5}{'images':>8}{'epochs':>7}{'s/epoch':>9}{'from':>8}"
                 f"{'trains':>8}{'cache hits':>11}{'final trains':>13}")
    for s in p.stages:
        lines.append(f"  {s.pipeline:<9}{s.stage:<18}{s.image_size:>5}{s.train_images:>8}{s.epochs:>7}"
                     f"{s.epoch_seconds:>9.2f}{s.source:>8}{s.search_trainings:>8}{s.search_cache_hits:>11}"
                     f"{s.final_trainings:>13}")
    per_trial = ", ".join(f"{k} {v:.1f} s" for k, v in p.trial_seconds.items())
    lines.append(f"  every trial besides training (evaluation, set-up, Ray/Optuna/W&B): {per_trial}")
    lines.append(f"  estimated: search {p.search_seconds / 60:.1f} min + final {p.final_seconds / 60:.1f} min = "
                 f"{p.estimated_seconds / 60:.1f} min (estimated_seconds {p.estimated_seconds:.0f}; upper bound: "
                 f"no early stopping)")
    lines.append(f"  cost model: {p.cost_model}")
    return "\n".join(lines)
