"""The fit loop's cost over a bare PyTorch loop, the DataLoader's share of an epoch, and torch.compile vs eager.

    .venv/bin/python bench/bench_fit.py                  # tiny stages, ~2-2.5 min on 2 shared cores (make bench)
    .venv/bin/python bench/bench_fit.py --paper          # + the paper's B7 classifier and U-Net++ B7 (~+5 min)
    .venv/bin/python bench/bench_fit.py --only joint --repeats 7 --steps 8 --workers 2 --no-compile

Models: the stages of the tiny presets (tiny-a classifier ``test_resnet`` 128 px, tiny-a U-Net++
``tu-mobilenetv3_small_050`` segmenter 96 px, tiny-c joint network 96 px) built by the harness's own stage kinds
(model, loss, parameter groups, optimiser settings of the preset); ``--paper`` adds EfficientNet-B7 300 px and
U-Net++ efficientnet-b7 320 px at batch 2 (no pretrained weights; ~1 image/s on this CPU).

step_overhead_ratio: a fit of ``--epochs`` epochs (default 2) of ``--steps`` steps (default 3; the demo data's
tiny epochs have 10-15) through ``harness.engine.fit.fit``, with all it does (validation with the stage metric,
scheduler, best/last checkpoints written atomically with fsync in the background, a callback, the best weights
at the end), against a bare loop of as many epochs (AdamW on the same parameter groups, the same initial weights,
the same batches from in-memory tensors in the same order, the same loss, the same autocast and channels_last as
the harness chooses, and the same validation forward passes without metrics or checkpoints). The arms alternate
in one process (``common.alternate``); per model the median of the per-round ratios, summary = the worst model.
``step_overhead_cpu_ratio`` is the same with the process's CPU seconds (all threads): on this shared VM a
single-threaded run gets about half a core, and wall-clock rounds of the same arm differ by up to 30 %, CPU
seconds by ~3 %. Short fits of short epochs make both figures conservative: the per-epoch checkpoint cost and the
per-fit costs (the last write's wait, set-up) weigh on 3 steps, not on a real epoch's 10-15 (tiny, demo data) or
~50-75 (paper size: 1503 images, batch 16); raw ``extra_s_per_epoch`` and ``steps_per_epoch_for_5pct`` say where
5 % is reached.
Before timing, one run of each arm checks that both end with bit-identical weights after the same steps (raw
``identical_weights``: the final epoch's weights in ``last.pt`` against the bare loop's).

data_loading_fraction: the stage's real training DataLoader (``harness.pipelines.stages._loader`` over the stage
dataset with the preset's augmentation, ``data.num_workers`` = ``--workers``, default the config's 0) iterated
alone for an epoch, over a harness training epoch (training and validation, as fit's history times it) that draws
its batches from that loader; alternated as above; summary = the worst tiny stage.

compile_speedup: eager over compiled seconds per training step (``harness.engine.fit.TrainingStep``: forward,
loss, backward; plus the AdamW step) of the tiny-a classifier (``--compile-all``: every tiny stage), after the
compilation (its seconds are in raw; ~80 s the first time on this CPU, seconds once inductor's cache holds it).
When inductor cannot compile, raw says why and the figure is absent (the harness trains eagerly, one warning).

Device: ``--device auto`` (CUDA when present, with the AMP and channels_last the harness would use); on CPU one
thread by default (``--threads``), the harness's setting for a trial on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, goal, median, write_result  # noqa: E402
from harness.config import RunConfig, RuntimeConfig, load_run_config  # noqa: E402
from harness.data.transforms import to_input, train_transform  # noqa: E402
from harness.engine import fit as engine  # noqa: E402
from harness.engine.device import DeviceInfo, resolve_device  # noqa: E402
from harness.pipelines.stages import STAGE_KINDS, StageKind, _loader  # noqa: E402
from harness.testing.images import ultrasound_image  # noqa: E402

NAME = "bench_fit"
SEED = 0


@dataclass(frozen=True)
class Spec:
    """One stage to measure: preset, config section, stage kind, classes, batch size, steps per epoch."""

    name: str
    preset: str
    section: str
    kind: str
    num_classes: int
    overrides: tuple[str, ...] = ()
    batch: int | None = None  # None = the preset's optim.batch_size
    steps: int | None = None  # None = --steps


TINY = (Spec("tiny-a classifier", "tiny-a", "classifier", "classifier", 3),
        Spec("tiny-a segmenter", "tiny-a", "segmenter", "segmenter", 1),
        Spec("tiny-c joint", "tiny-c", "joint", "joint", 3))
PAPER = (Spec("paper classifier B7", "paper-a", "classifier", "classifier", 3, ("classifier.pretrained=false",), 2, 1),
         Spec("paper segmenter U-Net++ B7", "paper-a", "segmenter", "segmenter", 1, ("segmenter.pretrained=false",),
              2, 1))


class Pairs(Dataset):
    """(input, target) items from in-memory tensors; a target may be a (mask, label) pair (the joint stage)."""

    def __init__(self, x: torch.Tensor, y: Any):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.x[i], (tuple(t[i] for t in self.y) if isinstance(self.y, tuple) else self.y[i])


def images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` synthetic uint8 images (speckle, a darker lesion), their 0/1 masks and labels (all three classes)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    pairs = [ultrasound_image((size, size), int(label), rng) for label in labels]
    return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.uint8),
            labels.astype(np.int64))


def targets(kind: str, masks: np.ndarray, labels: np.ndarray) -> Any:
    """What the stage's dataset takes: labels (classifier), 0/1 masks (binary segmenter), both (joint)."""
    return {"classifier": labels, "segmenter": masks, "joint": (masks, labels)}[kind]


def as_tensors(kind: str, imgs: np.ndarray, masks: np.ndarray, labels: np.ndarray, channels: int) -> Pairs:
    x = torch.from_numpy(to_input(imgs, channels))
    m, lab = torch.from_numpy(masks.astype(np.int64)), torch.from_numpy(labels)
    return Pairs(x, {"classifier": lab, "segmenter": m, "joint": (m, lab)}[kind])


def move(t: Any, info: DeviceInfo, image: bool = False) -> Any:
    """The bare loop's own host-to-device copy (the harness has ``engine._to_device``)."""
    if isinstance(t, (tuple, list)):
        return tuple(move(u, info) for u in t)
    t = t.to(info.device, non_blocking=info.pin_memory)
    return t.contiguous(memory_format=torch.channels_last) if image and info.channels_last else t


def to_float(out: Any) -> Any:
    return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


def sync(info: DeviceInfo) -> None:
    if info.is_cuda:
        torch.cuda.synchronize()


class Stage:
    """One stage's model, loss, data and the arms that train it."""

    def __init__(self, spec: Spec, info: DeviceInfo, steps: int, workers: int | None, tmp: Path):
        overrides = [*spec.overrides, *([f"data.num_workers={workers}"] if workers is not None else [])]
        self.config: RunConfig = load_run_config(spec.preset, overrides)
        self.spec, self.info, self.tmp = spec, info, tmp
        self.cfg = getattr(self.config, spec.section)
        self.kind: StageKind = STAGE_KINDS[spec.kind]
        self.batch = spec.batch or self.cfg.optim.batch_size
        self.steps = spec.steps or steps
        channels, size = self.config.data.channels, self.cfg.image_size
        n_train, n_val = self.steps * self.batch, max(self.batch, self.steps * self.batch // 4)
        imgs, masks, labels = images(n_train + n_val, size, SEED)
        self.train = as_tensors(spec.kind, imgs[:n_train], masks[:n_train], labels[:n_train], channels)
        val = as_tensors(spec.kind, imgs[n_train:], masks[n_train:], labels[n_train:], channels)
        self.val = list(DataLoader(val, batch_size=self.config.eval.batch_size))
        self.train_uint8 = (imgs[:n_train], targets(spec.kind, masks[:n_train], labels[:n_train]), labels[:n_train])
        self.loss = self.kind.loss(self.cfg, spec.num_classes, self.train_uint8[1]).to(info.device)
        self.model = self.kind.build(self.cfg, spec.num_classes, channels).to(info.device)
        if info.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.init = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.bare_train_s: list[float] = []
        self.fit_history: list[list[dict[str, Any]]] = []
        self.keep_last = False
        self.workdirs: list[Path] = []
        self.last_state: dict[str, torch.Tensor] = {}

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def memory_loader(self) -> DataLoader:
        """The same batches in the same order for both arms: a fresh generator with the same seed per run."""
        return DataLoader(self.train, batch_size=self.batch, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(SEED), pin_memory=self.info.pin_memory)

    def real_loader(self) -> DataLoader:
        """The harness's own training loader of this stage, with the preset's augmentation."""
        x, y, sample_labels = self.train_uint8
        ds = self.kind.dataset(x, y, self.config.data.channels, train_transform(self.cfg.augment, SEED))
        ctx = types.SimpleNamespace(config=self.config, info=self.info)
        return _loader(ctx, ds, self.batch, sample_labels, SEED, self.cfg.sampler == "weighted")  # type: ignore[arg-type]

    def reset(self) -> None:
        self.model.load_state_dict(self.init)
        torch.manual_seed(SEED)

    def harness(self, loader: Callable[[], DataLoader], epochs: int) -> Callable[[], None]:
        """A fit of ``epochs`` epochs, as a stage trains, in a new workdir (removed by :meth:`clean`, untimed;
        ``self.last_state`` keeps the final epoch's weights from its ``last.pt`` for the identity check)."""
        optim = self.cfg.optim.model_copy(update={"epochs": epochs, "max_steps_per_epoch": None})

        def run() -> None:
            self.reset()
            workdir = Path(tempfile.mkdtemp(dir=self.tmp))
            validate = lambda m: engine.run_validation(m, self.val, self.loss, self.info,  # noqa: E731
                                                       self.kind.score, self.kind.reduce)
            result = engine.fit(self.model, loader(), loss_fn=self.loss,
                                param_groups=self.kind.param_groups(self.model, self.cfg), optim=optim,
                                validate=validate, info=self.info, stage=self.spec.name, workdir=workdir,
                                callbacks=[lambda stage, record: None])
            sync(self.info)
            self.fit_history.append(result.history)
            if self.keep_last:
                self.last_state = torch.load(workdir / "last.pt", weights_only=True)["model"]
            self.workdirs.append(workdir)

        return run

    def clean(self) -> None:
        for workdir in self.workdirs:
            shutil.rmtree(workdir, ignore_errors=True)
        self.workdirs.clear()

    def bare(self, epochs: int) -> Callable[[], None]:
        """``epochs`` plain epochs: AdamW steps, then the validation forward passes (no metrics, no checkpoints)."""
        info = self.info

        def run() -> None:
            self.reset()
            optimizer = torch.optim.AdamW(self.kind.param_groups(self.model, self.cfg),
                                          weight_decay=self.cfg.optim.weight_decay)
            scaler = torch.amp.GradScaler(info.device.type, enabled=info.grad_scaling)
            train_s, loader = 0.0, self.memory_loader()  # one loader for the fit, as the harness has
            for _ in range(epochs):
                t0 = time.perf_counter()
                self.model.train()
                for x, y in loader:
                    x, y = move(x, info, image=True), move(y, info)
                    optimizer.zero_grad(set_to_none=True)
                    with torch.autocast(info.device.type, dtype=info.amp_dtype, enabled=info.amp):
                        out = self.model(x)
                    loss = self.loss(to_float(out), y)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                sync(info)
                train_s += time.perf_counter() - t0
                self.model.eval()
                with torch.no_grad():
                    for x, y in self.val:
                        with torch.autocast(info.device.type, dtype=info.amp_dtype, enabled=info.amp):
                            out = self.model(move(x, info, image=True))
                        self.loss(to_float(out), move(y, info))
                sync(info)
            self.bare_train_s.append(train_s)

        return run

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, Any]:
    a, b = {k: v.cpu() for k, v in a.items()}, {k: v.cpu() for k, v in b.items()}
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    return {"identical": all(torch.equal(a[k], b[k]) for k in a), "max_abs_diff": diff, "tensors": len(a)}


def cpu_timed(fn: Callable[[], Any], into: list[float]) -> Callable[[], None]:
    """``fn``, appending the process's CPU seconds (all threads) it took to ``into``: on a shared machine wall time
    also counts the time other processes held the cores, CPU time does not (nor waits for the disk)."""
    def run() -> None:
        t0 = time.process_time()
        fn()
        into.append(time.process_time() - t0)

    return run


def ratios(num: list[float], den: list[float]) -> list[float]:
    return [n / d for n, d in zip(num, den, strict=True)]


def measure_overhead(stage: Stage, repeats: int, epochs: int, loading: bool) -> dict[str, Any]:
    """Harness vs bare fits of ``epochs`` epochs (and, for ``loading``, an epoch of the real loader alone vs a
    harness epoch that draws from it), alternated."""
    t0 = time.perf_counter()
    harness, bare = stage.harness(stage.memory_loader, epochs), stage.bare(epochs)
    stage.keep_last = True
    harness()  # the untimed first round of each arm doubles as the identity check of the final epoch's weights
    stage.keep_last = False
    stage.clean()
    bare()
    check = identical(stage.last_state, stage.weights())
    stage.bare_train_s.clear()
    stage.fit_history.clear()
    arms: dict[str, Callable[[], Any]] = {"bare": bare, "harness": harness}
    if loading:
        real = stage.real_loader()
        arms["loader"] = lambda: sum(1 for _ in real)
        arms["harness_real_loader"] = stage.harness(lambda: real, 1)
    cpu: dict[str, list[float]] = {name: [] for name in arms}
    times = alternate({name: cpu_timed(fn, cpu[name]) for name, fn in arms.items()}, repeats, warmup=0)
    stage.clean()
    fits = stage.fit_history[::2] if loading else stage.fit_history
    out: dict[str, Any] = {
        "params": stage.params(), "batch": stage.batch, "steps": stage.steps, "epochs": epochs,
        "image_size": stage.cfg.image_size, "val_images": sum(len(b[0]) for b in stage.val),
        "identical_weights": check, "seconds": times, "cpu_seconds": cpu,
        "ratio": ratios(times["harness"], times["bare"]), "cpu_ratio": ratios(cpu["harness"], cpu["bare"]),
        "bare_train_s": stage.bare_train_s, "harness_train_s": [sum(h["train_seconds"] for h in f) for f in fits],
        "harness_epochs_s": [sum(h["seconds"] for h in f) for f in fits],
    }
    out["median_ratio"] = median(out["ratio"])
    out["median_cpu_ratio"] = median(out["cpu_ratio"])
    out["train_only_ratio"] = median(ratios(out["harness_train_s"], out["bare_train_s"]))
    extra = median((h - b) / epochs for h, b in zip(times["harness"], times["bare"], strict=True))
    step_s = median(out["bare_train_s"]) / (stage.steps * epochs)
    out["extra_s_per_epoch"] = extra
    out["steps_per_epoch_for_5pct"] = max(0.0, extra) / (0.05 * step_s)
    if loading:
        epoch_s = [f[0]["seconds"] for f in stage.fit_history[1::2]]  # training + validation, as fit times it
        out["real_loader_epoch_s"] = epoch_s
        out["loader_fraction"] = ratios(times["loader"], epoch_s)
        out["median_loader_fraction"] = median(out["loader_fraction"])
        out["workers"] = stage.config.data.num_workers
    out["wall_s"] = time.perf_counter() - t0
    return out


def measure_compile(stage: Stage, repeats: int) -> dict[str, Any]:
    """Eager vs compiled training steps (forward, loss, backward, AdamW) on the same batches."""
    info = stage.info
    batches = [(move(x, info, image=True), move(y, info)) for x, y in stage.memory_loader()]
    caught: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    handler = Catch(logging.WARNING)
    logging.getLogger("harness.engine.fit").addHandler(handler)

    def arm(compiled: bool) -> tuple[engine.TrainingStep, Callable[[], None]]:
        step = engine.TrainingStep(stage.model, compiled, stage.spec.name)
        optimizer = torch.optim.AdamW(stage.kind.param_groups(stage.model, stage.cfg))
        scaler = torch.amp.GradScaler(info.device.type, enabled=info.grad_scaling)

        def run() -> None:
            stage.model.train()
            for x, y in batches:
                optimizer.zero_grad(set_to_none=True)
                step.run(x, y, stage.loss, scaler, info).item()
                scaler.step(optimizer)
                scaler.update()
            sync(info)

        return step, run

    try:
        stage.reset()
        _, eager = arm(False)
        compiled_step, compiled = arm(True)
        t = time.perf_counter()
        eager()
        eager_first = time.perf_counter() - t
        t = time.perf_counter()
        compiled()  # compiles in its first step
        compile_s = time.perf_counter() - t - eager_first
        out: dict[str, Any] = {"model": stage.spec.name, "steps": len(batches), "batch": stage.batch,
                               "compile_s": compile_s, "fell_back": compiled_step.compiled is None,
                               "warnings": list(caught), "backend": str(engine.COMPILE_BACKEND)}
        if compiled_step.compiled is None:
            return out
        times = alternate({"eager": eager, "compiled": compiled}, repeats, warmup=1)
        out["seconds"] = times
        out["speedup"] = ratios(times["eager"], times["compiled"])
        out["median_speedup"] = median(out["speedup"])
        return out
    finally:
        logging.getLogger("harness.engine.fit").removeHandler(handler)
        torch._dynamo.reset()


def compile_child(args: argparse.Namespace, timeout_s: float) -> list[dict[str, Any]]:
    """:func:`measure_compile` in a child process (``--compile-only``) stopped after ``timeout_s``: inductor's
    first compilation of a model takes ~80-90 s on this loaded CPU, a second one seconds (its cache under
    /tmp/torchinductor_$USER keeps what the killed child compiled), and the default run must stay short."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-only", "--device", args.device,
           "--threads", str(args.threads), "--steps", str(args.steps), "--repeats", str(args.repeats),
           *(["--compile-all"] if args.compile_all else [])]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the child and inductor's compile workers, nothing else
        child.communicate()
        return [{"timeout_s": round(timeout_s, 1), "why": "inductor's first compilation did not finish in the time "
                 "left; its cache keeps the progress, run again (or --compile-budget)"}]
    lines = [line for line in out.splitlines() if line.startswith("[")]
    if child.returncode != 0 or not lines:
        return [{"error": f"exit {child.returncode}", "stderr": err.strip().splitlines()[-5:]}]
    return list(json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="training steps per epoch of a tiny stage (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per arm (default 3)")
    parser.add_argument("--paper", action="store_true", help="also the paper-size B7 models (batch 2, 1 step)")
    parser.add_argument("--paper-repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None,
                        help="data.num_workers of the real loader (default: the preset's, 0)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--compile-all", action="store_true", help="compile every tiny stage, not only the classifier")
    parser.add_argument("--compile-budget", type=float, default=165.0,
                        help="seconds since the start after which the compile measurement is stopped (default 165; "
                             "it gets at least 40 s)")
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", help="measure the models whose name contains this text only (e.g. joint, B7)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    started = time.time()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    info = resolve_device(RuntimeConfig(device=args.device))
    if not info.is_cuda:
        torch.set_num_threads(args.threads)
    if args.compile_only:
        with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
            specs = TINY if args.compile_all else TINY[:1]
            results = [measure_compile(Stage(spec, info, args.steps, None, Path(tmp)), args.repeats) for spec in specs]
        print(json.dumps(results), flush=True)
        return 0
    print(f"{NAME}: device {info.device}, amp {info.amp}, channels_last {info.channels_last}, "
          f"threads {torch.get_num_threads()}", flush=True)

    raw: dict[str, Any] = {"device": str(info.device), "amp": info.amp, "channels_last": info.channels_last,
                           "threads": torch.get_num_threads(), "steps": args.steps, "epochs": args.epochs,
                           "repeats": args.repeats, "models": {}, "compile": []}
    specs = [*TINY, *(PAPER if args.paper else ())]
    with tempfile.TemporaryDirectory(prefix="bench_fit_") as tmp:
        for spec in specs:
            if args.only and args.only.lower() not in spec.name.lower():
                continue
            stage = Stage(spec, info, args.steps, args.workers, Path(tmp))
            tiny = spec in TINY
            result = measure_overhead(stage, args.repeats if tiny else args.paper_repeats, args.epochs, loading=tiny)
            raw["models"][spec.name] = result
            extra = f", loader fraction {result['median_loader_fraction']:.3f}" if tiny else ""
            print(f"{NAME}: {spec.name}: harness/bare {result['median_ratio']:.3f} (CPU time "
                  f"{result['median_cpu_ratio']:.3f}, train part "
                  f"{result['train_only_ratio']:.3f}, extra {result['extra_s_per_epoch']:.3f} s per epoch), "
                  f"identical weights {result['identical_weights']['identical']}{extra} "
                  f"[{result['wall_s']:.0f} s]", flush=True)
            del stage
    if not args.no_compile:
        timeout_s = max(40.0, args.compile_budget - (time.time() - started))
        raw["compile"] = compile_child(args, timeout_s)
        for c in raw["compile"]:
            shown = (f"compile {c['compile_s']:.0f} s, speedup {c['median_speedup']:.3f}" if "median_speedup" in c
                     else f"no figure: {c.get('why') or c.get('warnings') or c.get('error')}")
            print(f"{NAME}: torch.compile {c.get('model', TINY[0].name)}: {shown}", flush=True)

    models = raw["models"]
    fractions = [m["median_loader_fraction"] for m in models.values() if "median_loader_fraction" in m]
    speedups = [c["median_speedup"] for c in raw["compile"] if "median_speedup" in c]
    summary: dict[str, Any] = {"step_overhead_ratio": max(m["median_ratio"] for m in models.values()),
                               "step_overhead_cpu_ratio": max(m["median_cpu_ratio"] for m in models.values())}
    if fractions:
        summary["data_loading_fraction"] = max(fractions)
    if speedups:
        summary["compile_speedup"] = min(speedups)
    goals = {"step_overhead_ratio": goal(summary["step_overhead_ratio"], 1.05, "<=")}
    if fractions:
        goals["data_loading_fraction"] = goal(summary["data_loading_fraction"], 0.10, "<=")
    write_result(NAME, summary=summary, raw=raw, started=started, goals=goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
