"""`harness data check|synth|import-busi|split`: parse arguments, call harness.data, print results."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.cli.common import parse_columns
from harness.errors import DataError

logger = logging.getLogger(__name__)

COLUMNS_HELP = (
    "map canonical columns to the workbook's names, e.g. label=diagnosis,patient_id=case "
    "(canonical: image_path, mask_path, label, patient_id, image_id, label_name)"
)


def _progress() -> bool:
    return sys.stderr.isatty() and logging.getLogger().getEffectiveLevel() <= logging.INFO


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from harness.data.check import check_dataset

    report = check_dataset(args.dir, parse_columns(args.columns))
    _warn(report.warnings)
    if not report.ok:
        raise DataError(report.errors)
    print(report.format_summary())
    return 0


def _dynamic_range(text: str | None) -> tuple[float, float] | None:
    """``--dynamic-range LOW,HIGH`` (or one number for a fixed range) -> (low, high) dB."""
    if text is None:
        return None
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2):
        raise DataError(f"--dynamic-range must be LOW,HIGH in dB (e.g. 40,70) or one number, but got {text!r}.")
    return (parts[0], parts[-1])


def cmd_synth(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from harness.data.synth import DEFAULT_ACQUISITION, synthesize  # heavy and optional: only when asked for

    knobs = {"gain_db": args.gain_db, "speckle_scale": args.speckle_scale, "depth_scale": args.depth_scale,
             "dynamic_range_db": _dynamic_range(args.dynamic_range), "lesion_scale": args.lesion_scale,
             "variation": args.variation}
    acquisition = replace(DEFAULT_ACQUISITION, **{k: v for k, v in knobs.items() if v is not None})
    s = synthesize(args.out, n_images=args.images, size=args.size, seed=args.seed, progress=_progress(),
                   acquisition=acquisition)
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items())
    print(f"wrote {s.n_images} images ({counts}) of {s.n_patients} patients at {args.size} px to {s.out}")
    changed = {k: v for k, v in asdict(acquisition).items() if v != asdict(DEFAULT_ACQUISITION)[k]}
    if changed:
        print("acquisition: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    print(f"took {s.seconds:.1f} s ({s.images_per_s:.1f} images/s)")
    print(f"next: harness data check {s.out}")
    return 0


def cmd_import_busi(args: argparse.Namespace) -> int:
    from harness.data.busi import import_busi

    summary = import_busi(args.src, args.out)
    print(summary.format())
    print(f"next: harness data check {summary.out} && harness data split {summary.out} --group-duplicates")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from harness.data.check import load_index
    from harness.data.splits import check_split_arguments, load_split, make_split, save_split, split_path

    check_split_arguments(args.val, args.test, args.seed)  # before the (slow) dataset check
    path = split_path(args.dir, args.name)
    index = load_index(args.dir, parse_columns(args.columns), check=True)
    split = make_split(index, args.val, args.test, args.seed, args.group_duplicates, name=args.name)
    if path.exists() and not args.force:
        try:
            old = load_split(args.dir, args.name, index)
        except DataError as e:  # stale (metadata changed) or damaged: replacing it is what the message asked for
            logger.warning("replacing %s: %s", path, e.problems[0])
        else:
            if old.subsets() != split.subsets():
                raise DataError(
                    f"splits/{args.name}.json already exists with other subsets (val={old.val_fraction}, "
                    f"test={old.test_fraction}, seed={old.seed}, group_duplicates={old.group_duplicates}); "
                    f"runs using it would change: pass --force to replace it, or choose another --name."
                )
    saved = save_split(split, args.dir, args.name)
    table = split.table()
    table.loc["Total"] = table.sum()
    print(table.to_string())
    if split.groups_merged:
        print(f"near-duplicate grouping merged {split.groups_merged} patient group(s)")
    print(f"wrote {saved}")
    return 0


def _dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, metavar="DIR", help="dataset directory")
    p.add_argument("--columns", metavar="NAME=COL,...", help=COLUMNS_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `harness data` and its verbs."""
    data = sub.add_parser(
        "data",
        help="check, synthesize, import (BUSI) and split datasets",
        description="Dataset tools. A dataset is a directory with images/*.png, masks/*.png and "
        "training_metadata.xlsx (see docs/data.md).",
    )
    data.set_defaults(func=lambda _args: (data.print_help(), 2)[1])
    verbs = data.add_subparsers(dest="data_verb", metavar="VERB")

    p = verbs.add_parser(
        "check",
        help="validate a dataset directory and summarise it",
        description="Check every image, mask and metadata row; print a summary with a preview of the "
        "paper's Table 1, or every problem as one 'error:' line (exit 2).",
    )
    _dataset_arguments(p)
    p.set_defaults(func=cmd_check)

    p = verbs.add_parser(
        "synth",
        help="write a synthetic paper-format dataset",
        description="Write a synthetic breast-ultrasound dataset (paper format, paper's class proportions).",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output directory (new, empty or a previous synthetic set)")
    p.add_argument("--images", type=int, default=300, metavar="N", help="number of images (default: 300)")
    p.add_argument("--size", type=int, default=256, metavar="PX", help="image side in pixels (default: 256)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    acq = p.add_argument_group("acquisition", "simulated scanner settings; the defaults are the generator's own")
    acq.add_argument("--gain-db", type=float, metavar="DB", help="overall gain in dB, e.g. 6 or -6 (default: 0)")
    acq.add_argument("--speckle-scale", type=float, metavar="X",
                     help="speckle grain (point-spread function width) x default, in [0.5, 3] (default: 1)")
    acq.add_argument("--depth-scale", type=float, metavar="X",
                     help="imaging depth x default, in [0.5, 2.5]: 1.5 shows anatomy and lesions 1/1.5 as large "
                          "(default: 1)")
    acq.add_argument("--dynamic-range", metavar="LOW,HIGH",
                     help="dB range each image's log-compression dynamic range is drawn from (default: 45,60)")
    acq.add_argument("--lesion-scale", type=float, metavar="X",
                     help="lesion linear size x default, in [0.4, 2.5] (default: 1)")
    acq.add_argument("--variation", type=float, metavar="V",
                     help="per-patient random spread of the settings above, in [0, 1] (default: 0)")
    p.set_defaults(func=cmd_synth)

    p = verbs.add_parser(
        "import-busi",
        help="convert the public BUSI folders into the paper format",
        description="Convert BUSI (benign/, malignant/, normal/ with '<name>_mask[_k].png' masks) into "
        "OUT/images, OUT/masks and OUT/training_metadata.xlsx; extra masks are merged by logical OR. "
        "BUSI has no patient ids: split it with --group-duplicates.",
    )
    p.add_argument("src", type=Path, metavar="SRC", help="BUSI folder (holding benign/, malignant/, normal/)")
    p.add_argument("out", type=Path, metavar="OUT", help="new or empty output directory")
    p.set_defaults(func=cmd_import_busi)

    p = verbs.add_parser(
        "split",
        help="make the patient-wise stratified split and save it as DIR/splits/NAME.json",
        description="Check the dataset, then write a patient-wise, class-stratified split to "
        "DIR/splits/NAME.json and print its Table-1-style counts.",
    )
    _dataset_arguments(p)
    p.add_argument("--val", type=float, default=0.2, help="validation fraction (default: 0.2, the paper's)")
    p.add_argument("--test", type=float, default=0.0, help="test fraction, carved first (default: 0)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42, the paper's)")
    p.add_argument("--name", default="default", help="split name (default: default)")
    p.add_argument(
        "--group-duplicates",
        action="store_true",
        help="keep near-duplicate images (perceptual hash) in one subset even across patient ids",
    )
    p.add_argument("--force", action="store_true", help="replace an existing split with different subsets")
    p.set_defaults(func=cmd_split)
