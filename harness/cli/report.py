"""`harness report RUN_DIR... | STUDY_DIR [--out DIR]`: Table 9, exports, figures, html."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from harness.report.build import build_report

    result = build_report(args.paths, out_dir=args.out, n_boot=args.bootstrap, seed=args.seed, subset=args.subset,
                          good_dice=args.good_dice, gradcam=not args.no_gradcam)
    for note in result.notes:
        print(f"note: {note}")
    print(f"report written to {result.out_dir} in {result.seconds:.1f} s:")
    for f in result.files:
        print(f"  {f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb."""
    p = sub.add_parser(
        "report",
        help="Table 9 with confidence intervals, csv/xlsx/md/tex exports, figures and index.html",
        description="Build the report of one or more run directories (pipeline A and/or B, any seeds) or of "
                    "one study directory (its final/ runs, else its trials/).",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR|STUDY_DIR")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: FIRST_PATH/report)")
    p.add_argument("--subset", choices=("auto", "val", "test"), default="auto",
                   help="evaluation subset; auto = test when every run has one, else val")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap replicates (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--good-dice", type=float, default=0.5, help="Dice for a 'good' mask in error propagation")
    p.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM panels")
    p.set_defaults(func=_report)
