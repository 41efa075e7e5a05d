"""`build_report`: runs or a study in, the report directory out (Table 9 files, figures, html)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.errors import ConfigError
from harness.report import details
from harness.report import sections as S
from harness.report.ablation import Ablation, compute_ablation
from harness.report.ablation_files import write_ablation
from harness.report.export import caption, write_table9
from harness.report.gradcam import ClassifierProvider, default_provider
from harness.report.html import page
from harness.report.loader import RunData, Sources, group_by_pipeline, load_sources
from harness.report.table9 import build_table9
from harness.tune.levels import REFERENCE, read_plan

logger = logging.getLogger(__name__)


@dataclass
class ReportData:
    """Everything computed for a report, before it is written anywhere."""

    sources: Sources
    groups: dict[str, list[RunData]]
    table9: pd.DataFrame
    tests: pd.DataFrame
    sheets: dict[str, pd.DataFrame]
    caption: str
    subset: str
    ablation: Ablation | None = None


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def compute(sources: Sources, n_boot: int = 1000, seed: int = 0, good_dice: float = 0.5) -> ReportData:
    """Table 9, paired tests, detail tables and (a ``levels`` study) the ablation table (no I/O)."""
    ablation, runs = None, sources.runs
    plan = read_plan(sources.study_dir / "final") if sources.study_dir and sources.origin == "final" else None
    if plan:  # an ablation study: Table 9 compares the pipelines at their reference configuration
        ablation = compute_ablation(sources.runs, plan, n_boot=n_boot, seed=seed)
        reference = {r["dir"] for r in plan["runs"] if r["variant"] == REFERENCE}
        runs = [r for r in sources.runs if r.path.name in reference]
    groups = group_by_pipeline(runs, sources.order)
    table, tests = build_table9(groups, n_boot=n_boot, seed=seed)
    sheets = {
        "Per-class": details.per_class(groups),
        "Dice by size": details.dice_by_lesion_size(groups),
        "Segmentation": details.segmentation_summary(groups),
        "End to end": details.end_to_end(groups),
        "Error propagation": details.error_propagation(groups, good_dice),
        "Per-run": details.per_run(sources.runs, groups),
    }
    subset = sources.runs[0].subset if sources.runs else "val"
    n_images = {p: len(runs[0].predictions) for p, runs in groups.items() if runs}
    n_patients = {p: int(runs[0].predictions["patient_id"].nunique()) for p, runs in groups.items() if runs}
    cap = caption(table, subset, n_images, n_boot, n_patients, caption_notes(groups))
    return ReportData(sources, groups, table, tests, sheets, cap, subset, ablation)


def caption_notes(groups: dict[str, list[RunData]]) -> list[str]:
    """Caveats the caption must state: runs without patient ids, variants shown apart."""
    notes = []
    no_ids = [r.name for runs in groups.values() for r in runs if not r.patient_ids]
    if no_ids:
        notes.append(f"predictions.csv of {', '.join(no_ids)} lacks patient ids (written before they were "
                     "recorded): each of its images counts as its own patient, so its intervals and p-values may be "
                     "too narrow.")
    variants = [label for label in groups if " (" in label]
    if variants:
        notes.append(f"{', '.join(variants)}: runs of one pipeline with different configurations are separate "
                     "columns, labelled by the fields that differ; only seeds of one configuration are pooled.")
    return notes


def page_title(groups: dict[str, list[RunData]]) -> str:
    """"Breast ultrasound: classification-first (A) vs segmentation-first (B) vs ..." from the registry."""
    from harness.pipelines.registry import label_of, spec_by_label

    parts = []
    for label, runs in groups.items():
        spec = (spec_by_label(label) or spec_by_label(label_of(runs[0].pipeline))) if runs else None
        if runs:
            parts.append(f"{spec.title} ({label})" if spec else f"pipeline {label}")
    return "Breast ultrasound: " + (" vs ".join(parts) or "no runs")


def default_out_dir(paths: list[Path]) -> Path:
    return Path(paths[0]) / "report"


MARKER = ".harness-report"
"""File a report directory holds: only a directory with it (or an empty or new one) is written into."""
REPORT_FILES = frozenset({"index.html", "figures", *(f"{stem}.{ext}" for stem in ("table9", "ablation")
                                                    for ext in ("csv", "xlsx", "md", "tex"))})
"""What a report writes; a directory of only these (with index.html) is a report of an older harness."""
MAX_BOOTSTRAP = 100_000


def check_options(n_boot: int, seed: int, good_dice: float) -> None:
    """Every option of :func:`build_report` in range, checked before anything is read or written."""
    import math

    from harness.config import SEED_MAX

    problems = []
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 1 <= n_boot <= MAX_BOOTSTRAP:
        problems.append(f"--bootstrap must be an integer in [1, {MAX_BOOTSTRAP}], but got {n_boot!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        problems.append(f"--seed must be an integer in [0, {SEED_MAX}], but got {seed!r}.")
    if not isinstance(good_dice, (int, float)) or not math.isfinite(good_dice) or not 0 <= good_dice <= 1:
        problems.append(f"--good-dice must be a number in [0, 1], but got {good_dice!r}.")
    if problems:
        raise ConfigError(problems)


def check_out_dir(out_dir: Path) -> None:
    """Refuse to write into anything but a new or empty directory or one of our reports (marker file, or
    only report files): a report replaces index.html, table9.* and figures/*.png of its directory."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConfigError(f"--out {out_dir}: exists and is not a directory; choose another --out.")
    if not out_dir.exists() or (out_dir / MARKER).is_file():
        return
    try:
        names = {p.name for p in out_dir.iterdir()}
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: cannot list it ({e.strerror}).") from None
    if names and not ("index.html" in names and names <= REPORT_FILES):
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise ConfigError(f"--out {out_dir}: not empty ({shown}) and not a report directory (no {MARKER}); a report "
                          "replaces index.html, table9.* and figures/ there: choose a new or empty --out.")


def claim_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` (checked by :func:`check_out_dir`) and mark it as a report directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / MARKER
    if not marker.is_file():
        marker.write_text("A report written by `harness report`; it may be rebuilt (replaced) here.\n")


def build_report(paths: list[Path], out_dir: Path | None = None, n_boot: int = 1000, seed: int = 0,
                 subset: str = "auto", good_dice: float = 0.5, gradcam: bool = True,
                 provider: ClassifierProvider | None = None) -> ReportResult:
    """Read RUN_DIR... or a STUDY_DIR and write the report into ``out_dir``.

    ``provider`` gives Grad-CAM its models and inputs (default: ``harness.pipelines.artifacts``).
    """
    t0 = time.perf_counter()
    check_options(n_boot, seed, good_dice)
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir) if out_dir else default_out_dir(paths)
    check_out_dir(out_dir)
    sources = load_sources(paths, subset)
    data = compute(sources, n_boot=n_boot, seed=seed, good_dice=good_dice)
    result = ReportResult(out_dir=out_dir)
    try:
        claim_out_dir(out_dir)
        result.files += write_table9(out_dir, data.table9, data.tests, data.sheets, data.caption)
        if data.ablation is not None:
            result.files += write_ablation(out_dir, data.ablation)
        logger.info("Table 9 written (%.1f s); drawing figures", time.perf_counter() - t0)
        if gradcam and provider is None:
            provider = default_provider()
        result.files.append(write_html(out_dir, data, result, provider, gradcam))
    except OSError as e:  # a full disk, no permission, --out under a file
        where = e.filename or out_dir
        raise ConfigError(f"--out {out_dir}: cannot write the report ({where}: {e.strerror or e}); free space or "
                          "choose another --out.") from None
    result.seconds = time.perf_counter() - t0
    return result


def write_html(out_dir: Path, data: ReportData, result: ReportResult, provider: ClassifierProvider | None = None,
               gradcam: bool = True) -> Path:
    """Figures into ``out_dir/figures`` and ``out_dir/index.html`` referencing them."""
    fig_dir = out_dir / S.FIG_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):  # figures of an earlier report must not linger
        old.unlink()
    sections = [S.table9_section(data, fig_dir)]
    if data.ablation is not None:
        sections.append(S.ablation_section(data.ablation, fig_dir))
    sections += [S.classification_section(data, fig_dir),
                S.segmentation_section(data, fig_dir), S.end_to_end_section(data, fig_dir),
                S.training_section(data, fig_dir)]
    cam, notes = S.gradcam_section(data, fig_dir, provider, gradcam)
    sections.append(cam)
    result.notes += notes
    if data.sources.study_dir is not None:
        study, notes = S.study_section(data.sources.study_dir, fig_dir)
        if data.sources.runs:
            sections.append(study)
        else:
            sections.insert(0, study)
        result.notes += notes
    sections.append(S.runs_section(data, result.files, out_dir))
    runs = data.sources.runs
    where = str(data.sources.study_dir) if data.sources.study_dir else ", ".join(r.name for r in runs)
    subtitle = [f"Source: {where} ({data.sources.origin}); subset: {data.subset}; "
                f"{len(runs)} run(s): " + (", ".join(f"{p} {len(g)}" for p, g in data.groups.items()) or "none") + ".",
                f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')} by harness {__version__}."]
    path = out_dir / "index.html"
    path.write_text(page(page_title(data.groups), subtitle, sections))
    result.files += sorted(fig_dir.glob("*.png"))
    return path
