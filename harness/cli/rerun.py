"""`harness rerun RUN_DIR [--out DIR] [--data DIR] [--reuse-stages]`: re-make a run from its manifest."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerun", help="re-execute a run from its manifest.json and say whether the metrics match",
        description="Train RUN_DIR's config.yaml again (from scratch, unless --reuse-stages) on the dataset and split "
                    "its manifest.json names, evaluate the same subsets and compare every metric with the "
                    "original's; list what differs in code, packages, device and data. Exit 0 when the metrics "
                    "match, 1 when they do not.",
    )
    p.add_argument("run_dir", type=Path, help="a run directory with manifest.json (harness run, a study trial or "
                                              "final run, a fold of a cross-validated trial)")
    p.add_argument("--out", type=Path, help="where the rerun goes (default: RUN_DIR-rerun)")
    p.add_argument("--data", type=Path, help="dataset directory (default: the manifest's)")
    p.add_argument("--reuse-stages", action="store_true",
                   help="load the original's trained stages instead of training again (checks evaluation only)")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance per metric (default 1e-6)")
    p.set_defaults(func=_rerun)


def _rerun(args: argparse.Namespace) -> int:
    from harness.rerun import rerun

    result = rerun(args.run_dir, args.out, data_dir=args.data, reuse_stages=args.reuse_stages, rtol=args.rtol,
                   command=args.command)
    for line in result.differences:
        print(f"differs: {line}")
    if result.matches:
        print(f"metrics match: {result.compared} values of {args.run_dir} reproduced in {result.out_dir} "
              f"(largest difference {result.max_abs_diff:.3g})")
        return 0
    print(f"metrics differ: {len(result.mismatches)} of {result.compared} values between {args.run_dir} and "
          f"{result.out_dir} (largest difference {result.max_abs_diff:.3g})")
    for m in result.mismatches[:20]:
        print(f"  {m.subset} {m.metric}: {m.original} -> {m.rerun}")
    return 1
