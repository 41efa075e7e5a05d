"""`harness study run|resume|status|wandb-sweep`, `harness trial` (W&B agent) and `harness quickstart`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="hyperparameter and ablation studies (Ray Tune + Optuna)",
                           description="Run, resume and inspect studies defined in studies/*.yaml.")
    verbs = study.add_subparsers(dest="study_verb", metavar="VERB")

    run = verbs.add_parser("run", help="run a study: search, then the final seeded runs and the report",
                           description="Search with Ray Tune + Optuna (RDB storage STUDY_DIR/optuna.db), re-run "
                                       "the best config of each pipeline with the study's seeds on the test "
                                       "subset, and build the report.")
    run.add_argument("study", help="study YAML (e.g. studies/quickstart.yaml) or its name")
    _common(run)
    run.add_argument("--resume", action="store_true", help="continue an interrupted study in STUDY_DIR")
    run.set_defaults(func=_run)

    resume = verbs.add_parser("resume", help="continue an interrupted study from its directory",
                              description="Same as `study run STUDY_DIR/study.yaml --out STUDY_DIR --resume`.")
    resume.add_argument("study_dir", type=Path)
    resume.add_argument("--data", type=Path, help="dataset directory (default: as recorded in the study)")
    resume.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    resume.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with the local Ray")
    resume.add_argument("--storage", help="Optuna RDB URL (default: sqlite in STUDY_DIR)")
    resume.add_argument("--no-report", action="store_true", help="skip building the report")
    resume.set_defaults(func=_resume)

    plan = verbs.add_parser("plan", help="what a study will cost before it runs",
                            description="Trials per pipeline, stage trainings and cache hits, per-epoch cost of "
                                        "each stage (a short probe here, or --calibrate with an earlier study's "
                                        "records), concurrency and the estimated wall time.")
    plan.add_argument("study", help="study YAML or its name")
    plan.add_argument("--data", type=Path, help="dataset directory (its image count sizes the epochs)")
    plan.add_argument("--calibrate", type=Path, metavar="STUDY_DIR", help="per-epoch times from an earlier study")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (estimated_seconds, ...)")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    plan.set_defaults(func=_plan)

    status = verbs.add_parser("status", help="table of trials and the best so far",
                              description="Print every trial (state, pipeline, params, values, time) and the best "
                                          "trial of each pipeline.")
    status.add_argument("study_dir", type=Path)
    status.add_argument("--storage", help="Optuna RDB URL (default: sqlite in STUDY_DIR)")
    fmt = status.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="machine-readable: trials, budgets and best trial per pipeline as JSON")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="the trial table as CSV")
    status.set_defaults(func=_status, format="text")

    sweep = verbs.add_parser("wandb-sweep", help="write the equivalent W&B sweep YAML",
                             description="Write a W&B sweep config that runs the same search with `wandb agent`; "
                                         "each agent run calls `harness trial`. For equal budgets and early "
                                         "termination, write one sweep per pipeline with --pipeline.")
    sweep.add_argument("study", help="study YAML or the name of a shipped study")
    sweep.add_argument("--data", type=Path, help="dataset directory the agents use (default: the study's data.dir)")
    sweep.add_argument("--pipeline", help="a sweep for this pipeline only (its budget; hyperband from ASHA)")
    sweep.add_argument("--out", type=Path, help="output YAML (default: stdout)")
    sweep.set_defaults(func=_sweep)

    trial = sub.add_parser("trial", help="run one trial from wandb.config (for `wandb agent`) or --set values",
                           description="Run one trial of STUDY with parameters from the W&B agent's config (or "
                                       "from --set key=value), tracked as a W&B run.")
    trial.add_argument("--study", required=True)
    trial.add_argument("--data", type=Path)
    trial.add_argument("--out", type=Path,
                       help="run directory (default: runs/sweeps/<study>/<W&B run id, or timestamp-random>)")
    trial.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    trial.add_argument("--epoch-objective", action="store_true",
                       help="log the stage-aligned proxy under the first objective every epoch (W&B hyperband)")
    trial.add_argument("params", nargs="*", help="key=value pairs as passed by `wandb agent` (${args_no_hyphens})")
    trial.set_defaults(func=_trial)

    quick = sub.add_parser("quickstart", help="synthesise data, run studies/quickstart.yaml, build the report",
                           description="The main job on a fresh machine: synthetic data in data/synth, the "
                                       "quickstart study (both pipelines, tiny presets, CPU), Table 9 and the html "
                                       "report.")
    quick.add_argument("--data", type=Path, default=Path("data/synth"))
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    quick.add_argument("--images", type=int, default=300)
    quick.add_argument("--fresh", action="store_true", help="delete a previous quickstart study first")
    quick.set_defaults(func=_quickstart)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="dataset directory (default: the study's data.dir or data/synth)")
    p.add_argument("--columns", help="metadata column mapping, e.g. label=diagnosis,patient_id=case")
    p.add_argument("--out", type=Path, help="study directory (default: runs/studies/<name>)")
    p.add_argument("--address", help="Ray cluster to join, e.g. `auto` or ray://head:10001 (default: $RAY_ADDRESS, "
                                     "as `ray job submit` sets it, else a new local Ray)")
    p.add_argument("--dashboard", action="store_true",
                   help="start Ray's dashboard with the local Ray (needs pip install 'harness[dashboard]')")
    p.add_argument("--storage", help="Optuna RDB URL, e.g. postgresql://user@host/db (default: sqlite in STUDY_DIR)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a study field, e.g. trials=4 or final.seeds=[1]")
    p.add_argument("--no-report", action="store_true", help="skip building the report")


def _overrides(items: list[str]) -> dict:
    from harness.config import parse_override

    return {".".join(k): v for k, v in (parse_override(o) for o in items)}


def _plan(args: argparse.Namespace) -> int:
    from harness.tune.plan import format_plan, plan_study
    from harness.tune.study import load_study

    plan = plan_study(load_study(args.study, _overrides(args.overrides)), args.data, args.calibrate)
    print(plan.to_json() if args.json else format_plan(plan))
    return 0


def _execute(spec, study_dir: Path, args: argparse.Namespace, resume: bool) -> int:
    """Run (or resume) the study; exit 0, 1 when a pipeline has no complete trial, 130 on Ctrl-C."""
    import sys

    from harness.tune.plan import format_plan, plan_study
    from harness.tune.runner import failed_pipelines, run_study

    calibrate = study_dir if (study_dir / "stage_cache").is_dir() else None
    print(format_plan(plan_study(spec, args.data, calibrate)), flush=True)
    try:
        summary = run_study(spec, study_dir, data_dir=args.data, address=args.address, resume=resume,
                            storage_url=args.storage, dashboard=getattr(args, "dashboard", False),
                            command=getattr(args, "command", None))
    except KeyboardInterrupt:
        print(f"interrupted: the study in {study_dir} is kept (finished trials stay finished, interrupted ones run "
              f"again); continue it with `harness study resume {study_dir}`", file=sys.stderr)
        return 130
    print(f"study {summary['study']}: {summary['finished']} finished trials in {summary['storage']}")
    for p, best in summary["best"].items():
        print(f"  best {p}: trial {best['number']} ({best.get('trial_dir', '')}) values={best['values']} "
              f"{json.dumps(best['overrides'])}")
    if not args.no_report and summary["final"]:
        _report(study_dir)
    failed = failed_pipelines(summary, list(spec.pipelines))
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0


def _report(study_dir: Path) -> None:
    from harness.report.build import build_report
    from harness.tune.runner import publish_study_report

    result = build_report([study_dir])
    print(f"report: {result.out_dir / 'index.html'} ({result.seconds:.0f}s)")
    artifact = publish_study_report(study_dir, result.out_dir)
    if artifact:
        print(f"W&B: report and Table 9 logged as artifact {artifact}")
    ablation = result.out_dir / "ablation.md"
    if ablation.exists():
        print(f"ablation table: {ablation} (also .csv, .xlsx, .tex); rebuild it with `harness report {study_dir}`")


def _run(args: argparse.Namespace) -> int:
    from harness.tune.study import load_study

    spec = load_study(args.study, _overrides(args.overrides))
    if args.columns:
        from harness.cli.common import parse_columns

        spec = spec.model_copy(update={"overrides": {**spec.overrides, "data.columns": parse_columns(args.columns)}})
    study_dir = args.out or Path("runs/studies") / spec.name
    return _execute(spec, study_dir, args, args.resume)


def _resume(args: argparse.Namespace) -> int:
    from harness.errors import ConfigError
    from harness.tune.study import load_study

    path = args.study_dir / "study.yaml"
    if not path.is_file():
        raise ConfigError(f"{args.study_dir}: no study.yaml there; "
                          "is this a study directory (harness study run --out)?")
    spec = load_study(path)
    args.overrides = []
    return _execute(spec, args.study_dir, args, resume=True)


def _status(args: argparse.Namespace) -> int:
    from harness.tune.status import format_status, status_json, study_table

    table, best = study_table(args.study_dir, args.storage)
    if args.format == "json":
        print(json.dumps(status_json(table, best), indent=2))
    elif args.format == "csv":
        print(table.to_csv(index=False), end="")
    else:
        print(format_status(table, best))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    import yaml

    from harness.tune.study import load_study
    from harness.tune.sweep import wandb_sweep

    spec = load_study(args.study)
    sweep = wandb_sweep(spec, args.study, data_dir=args.data, pipeline=args.pipeline)
    text = yaml.safe_dump(sweep, sort_keys=False)
    if "--data" not in sweep["command"]:
        logger.warning("no --data and no data.dir in the study: agents will use $HARNESS_DATA or ./data/synth")
    if len(spec.pipelines) > 1 and not args.pipeline:
        logger.warning("one sweep over %d pipelines: W&B's optimiser may spend the budget unevenly and cannot stop "
                       "runs early across pipelines; `--pipeline P` writes one sweep per pipeline", len(spec.pipelines))
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}; start it with `wandb sweep {args.out}` then `wandb agent <sweep id>`")
    else:
        print(text, end="")
    return 0


def _trial(args: argparse.Namespace) -> int:
    from harness.tune.study import load_study
    from harness.tune.sweep import agent_run_dir, run_agent_trial

    spec = load_study(args.study)
    params = _overrides(list(args.params) + list(args.overrides))
    out = args.out or agent_run_dir(spec)
    result = run_agent_trial(spec, params, out, data_dir=args.data, epoch_objective=args.epoch_objective,
                             command=args.command)
    print(json.dumps({k: result.get(k) for k in ("balanced_accuracy", "dice_mean", "seconds")}))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from harness.tune.study import load_study

    spec = load_study("quickstart")  # ./studies/quickstart.yaml when there is one, else the shipped study
    if args.fresh:
        from harness.tune.paths import remove_study_dir

        remove_study_dir(args.out, spec.name)
    if not (args.data / "training_metadata.xlsx").exists():
        import sys

        from harness.data.synth import synthesize

        logger.info("synthesising %d breast-ultrasound images into %s ...", args.images, args.data)
        synthesize(args.data, n_images=args.images, size=256, seed=0, progress=sys.stderr.isatty())
    resume = (args.out / "optuna.db").exists()
    ns = argparse.Namespace(data=args.data, address=None, storage=None, no_report=False, dashboard=False,
                            command=args.command)
    code = _execute(spec, args.out, ns, resume=resume)
    if code == 0:
        print(f"done: study in {args.out}, Table 9 in {args.out / 'report' / 'table9.md'}")
    return code
