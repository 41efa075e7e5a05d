"""`harness run CONFIG [--set k=v ...] [--data DIR] [--split NAME] [--out RUN_DIR]`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness.config import bundled_presets, load_run_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="train and evaluate one pipeline variant",
        description="Train what the config needs (reusing stored stages), evaluate on the validation "
                    "subset (and the test subset when the split has one) and write the run directory.",
        epilog=f"presets: {', '.join(bundled_presets())} (and those plug-ins register). "
               "Example: harness run tiny-a --set eval.tta=false",
    )
    p.add_argument("config", help="preset name or path to a YAML run config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field with a dotted key, e.g. roi.margin=0.3 (repeatable)")
    p.add_argument("--data", type=Path, help="dataset directory (default: data.dir, $HARNESS_DATA or data/synth)")
    p.add_argument("--split", help="split name under DATA/splits/ (created when missing)")
    p.add_argument("--columns", help="metadata column mapping, e.g. label=diagnosis,patient_id=case")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<name>-<timestamp>)")
    p.add_argument("--store", type=Path, help="shared stage store (default: RUN_DIR/checkpoints)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from harness.cli.common import parse_columns
    from harness.pipelines.run import run_trial

    overrides = list(args.overrides)
    if args.split:
        overrides.append(f"data.split={args.split}")
    config = load_run_config(args.config, overrides)
    if args.columns:
        data = config.data.model_copy(update={"columns": parse_columns(args.columns)})
        config = config.model_copy(update={"data": data})
    out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_trial(config, out, data_dir=args.data, store_root=args.store, provenance={"command": args.command})
    from harness.metrics.registry import list_metrics

    keys = [m.key for m in list_metrics(table9=True)]  # the CLI summary is Table 9's rows
    print(json.dumps({k: result.metrics.get(k) for k in keys}, indent=2))
    if result.test_metrics:
        print("test:", json.dumps({k: result.test_metrics.get(k) for k in keys}))
    trained = ", ".join(result.trained_stages) or "none, all stages reused"
    print(f"run directory: {result.run_dir}  ({result.seconds:.0f}s; trained: {trained})")
    return 0
