"""`harness predict RUN_DIR|STUDY_DIR IMAGES... --out DIR` and `harness export RUN_DIR --format ...`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="apply a run's (or a study's best) trained pipeline to new PNG images",
                       description="Rebuild the trained stages of RUN_DIR (or of the best final run of STUDY_DIR) "
                                   "and run the pipeline on IMAGES: predictions.csv, masks at each image's size, "
                                   "overlays. Nothing is retrained.")
    p.add_argument("source", type=Path, help="run directory or study directory")
    p.add_argument("images", type=Path, nargs="+", help="PNG images (a directory: every *.png in it)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=_predict)

    e = sub.add_parser("export", help="export a run's trained stages as TorchScript or ONNX",
                       description="Write each stage of RUN_DIR's pipeline as TorchScript (.pt) or ONNX, with "
                                   "pipeline.json and a README.md loader example.")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    e.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/export-<format>)")
    e.set_defaults(func=_export)


def _images(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob("*.png")) if p.is_dir() else [p]
    return out


def _predict(args: argparse.Namespace) -> int:
    from harness.pipelines.predict import predict

    table = predict(args.source, _images(args.images), args.out)
    counts = table["pred_name"].value_counts().to_dict() if not table.empty else {}
    print(f"{len(table)} image(s): {counts} -> {args.out / 'predictions.csv'} (masks/, overlays/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from harness.pipelines.export import export_run

    out = args.out or args.run_dir / f"export-{args.format}"
    files = export_run(args.run_dir, out, args.format)
    print("\n".join(str(f) for f in files))
    return 0
