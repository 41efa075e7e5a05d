"""`harness data check`: every problem of a dataset directory, all reported together.

Metadata problems come from :mod:`harness.data.records`; this module adds the file-level ones
(unreadable/missing PNGs, mask size, mask emptiness vs label) and a summary with a preview of the
paper's Table 1. Images and masks are verified (PNG chunks, CRCs, declared size, image data) and
decoded the way the training cache decodes them, so a file the check accepts never fails later.

:func:`load_index` is the gate every command passes: the same checks, raised together. It lives
here, not in records, so the dependency runs one way (check -> records).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import CLASS_NAMES, NORMAL
from harness.data.io import FileProblem, PngHeader, load_png, normalize_rel
from harness.data.records import METADATA_FILE, DatasetIndex, Record, cell_text, parse_metadata
from harness.errors import DataError

logger = logging.getLogger(__name__)

PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset`: problems (one line each), warnings and a summary."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    index: DatasetIndex | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def format_summary(self) -> str:
        """A readable multi-line summary (what `harness data check` prints)."""
        s = self.summary
        if not s.get("images"):
            return f"{s.get('root', 'dataset')}: no usable images."
        classes = ", ".join(f"{k} {v}" for k, v in s["classes"].items())
        lines = [f"dataset: {s['root']} (metadata hash {s['metadata_hash']})", f"images: {s['images']} ({classes})"]
        p = s["patients"]
        lines.append(
            f"patients: {p['count']} (up to {p['max_images']} images each)"
            if p["from_column"]
            else f"patients: no patient_id column; {p['count']} images treated as {p['count']} patients"
        )
        z = s["image_size"]
        if z:
            lines.append(
                f"image size: width {z['width'][0]}-{z['width'][2]} (median {z['width'][1]}), height "
                f"{z['height'][0]}-{z['height'][2]} (median {z['height'][1]}), {z['distinct']} distinct; "
                f"formats: {', '.join(f'{k} {v}' for k, v in s['formats'].items())}"
            )
        area = s["lesion_area_pct"]
        if area:
            pcts = ", ".join(f"p{k} {v:.2f}" for k, v in area.items())
            lines.append(f"lesion area, % of image (Benign+Malignant): {pcts}")
        preview = s.get("split_preview")
        if preview:
            lines.append(f"split preview (patient-wise, val {preview['val']}, seed {preview['seed']}; "
                         "the paper's Table 1):")
            cols = list(preview["table"])
            lines.append("  " + f"{'Class':<10}" + "".join(f"{c:>12}" for c in cols))
            for row in preview["table"][cols[0]]:
                lines.append("  " + f"{row:<10}" + "".join(f"{preview['table'][c][row]:>12}" for c in cols))
        lines.append(f"checked in {s['seconds']:.2f} s: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


@dataclass
class _FileResult:
    header: PngHeader | None = None
    lesion_fraction: float | None = None
    errors: list[str] = field(default_factory=list)


def _problem(e: FileProblem, rel: str, record: Record) -> str:
    return f"{rel}: {e.reason} ({record.where()}); {e.todo}."


def check_record(index: DatasetIndex, record: Record) -> _FileResult:
    """File-level checks of one record: image and mask decodable, same size, emptiness vs label.

    Both files are decoded as the training cache decodes them, after their image data was verified
    (:func:`harness.data.io.load_png` with ``verify``), so what the check accepts the cache can read.
    """
    out = _FileResult()
    try:
        out.header = load_png(index.image_file(record), verify=True)[0]
    except FileProblem as e:
        out.errors.append(_problem(e, record.image_path, record))
    mask_file = index.mask_file(record)
    if mask_file is None:
        if record.label != NORMAL:
            out.errors.append(
                f"{METADATA_FILE} row {record.row} (image {record.image_id}): {record.label_name} image has no "
                "mask_path; add its lesion mask (only Normal images may have none)."
            )
        return out
    try:
        mask = load_png(mask_file, mask=True, verify=True)[1]
    except FileProblem as e:
        out.errors.append(_problem(e, record.mask_path or "", record))
        return out
    h, w = mask.shape
    if out.header is not None and (out.header.width, out.header.height) != (w, h):
        out.errors.append(
            f"{record.mask_path}: size {w}x{h} differs from its image {record.image_path} "
            f"({out.header.width}x{out.header.height}) ({record.where()}); re-export the mask at the image size."
        )
    lesion = int(mask.sum())
    if record.label == NORMAL and lesion:
        out.errors.append(
            f"{record.mask_path}: Normal image has a non-empty mask ({lesion} lesion px) ({record.where()}); "
            "fix the label or clear the mask."
        )
    elif record.label != NORMAL and not lesion:
        out.errors.append(
            f"{record.mask_path}: {record.label_name} image has an empty mask ({record.where()}); "
            "draw the lesion or fix the label."
        )
    elif record.label != NORMAL:
        out.lesion_fraction = lesion / mask.size
    return out


def _unlisted(index: DatasetIndex, listed: set[str]) -> list[str]:
    folder = index.root / "images"
    if not folder.is_dir():
        return []
    extra = sorted(f"images/{p.name}" for p in folder.glob("*.png") if f"images/{p.name}" not in listed)
    if not extra:
        return []
    return [
        f"images/: {len(extra)} PNG file(s) are not listed in {METADATA_FILE} and are ignored "
        f"(e.g. {', '.join(extra[:3])})."
    ]


def _stats(values: list[int]) -> list[int]:
    return [int(np.min(values)), int(np.median(values)), int(np.max(values))]


def _summary(index: DatasetIndex, results: list[_FileResult]) -> dict[str, Any]:
    headers = [r.header for r in results if r.header is not None]
    formats: dict[str, int] = {}
    for hd in headers:
        formats[hd.kind] = formats.get(hd.kind, 0) + 1
    patients = index.patients()
    per_patient: dict[str, int] = {}
    for p in patients:
        per_patient[p] = per_patient.get(p, 0) + 1
    areas = [100 * r.lesion_fraction for r in results if r.lesion_fraction is not None]
    return {
        "root": str(index.root),
        "metadata_hash": index.metadata_hash,
        "images": len(index),
        "classes": {name: index.class_counts()[name] for name in CLASS_NAMES},
        "patients": {
            "count": len(per_patient),
            "max_images": max(per_patient.values(), default=0),
            "from_column": index.has_patient_ids,
        },
        "image_size": {
            "width": _stats([h.width for h in headers]),
            "height": _stats([h.height for h in headers]),
            "distinct": len({(h.width, h.height) for h in headers}),
        }
        if headers
        else {},
        "formats": dict(sorted(formats.items())),
        "lesion_area_pct": {p: float(np.percentile(areas, p)) for p in PERCENTILES} if areas else {},
    }


def _preview(index: DatasetIndex, warnings: list[str]) -> dict[str, Any] | None:
    from harness.data.splits import make_split  # splits imports records; keep check importable alone

    try:
        split = make_split(index, val=0.2, test=0.0, seed=42)
    except DataError as e:
        warnings.append(f"split preview not possible: {e.problems[0]}")
        return None
    table = split.table()
    return {"val": 0.2, "seed": 42, "table": {c: {k: int(v) for k, v in table[c].items()} for c in table.columns}}


def check_dataset(
    root: Path, columns: dict[str, str] | None = None, *, preview: bool = True, workers: int = 2
) -> CheckReport:
    """Check a dataset directory and collect every problem (never raises for bad data).

    ``preview`` adds the default 80/20 patient-wise split's Table 1 to the summary.
    """
    t0 = time.perf_counter()
    parsed = parse_metadata(Path(root), columns)
    report = CheckReport(list(parsed.errors), list(parsed.warnings), {}, parsed.index)
    index = parsed.index
    if index is None:
        return report
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda r: check_record(index, r), index.records))
    for r in results:
        report.errors.extend(r.errors)
    listed = set()
    if parsed.table is not None and "image_path" in parsed.columns:
        listed = {normalize_rel(cell_text(v)) for v in parsed.table[parsed.columns["image_path"]] if cell_text(v)}
    report.warnings.extend(_unlisted(index, listed))
    report.summary = _summary(index, results)
    if preview and report.ok and len(index):
        report.summary["split_preview"] = _preview(index, report.warnings)
    report.summary["seconds"] = time.perf_counter() - t0
    logger.debug("checked %s in %.2f s", root, report.summary["seconds"])
    return report


def load_index(root: Path, columns: dict[str, str] | None = None, *, check: bool = True) -> DatasetIndex:
    """The validated records of a dataset directory; what every training command starts from.

    With ``check=True`` the full :func:`check_dataset` runs (every file is verified) and all
    problems are raised together as one :class:`~harness.errors.DataError`; with ``check=False``
    only the metadata is validated (for callers whose driver already checked the files, and for
    benchmarks). Warnings go to the log.
    """
    if check:
        report = check_dataset(root, columns, preview=False)
        errors, warnings, index = report.errors, report.warnings, report.index
    else:
        parsed = parse_metadata(Path(root), columns)
        errors, warnings, index = parsed.errors, parsed.warnings, parsed.index
    if errors:
        raise DataError(errors)
    for w in warnings:
        logger.warning(w)
    assert index is not None
    return index
