"""Page sections: each function draws its figures into ``fig_dir`` and returns a :class:`Section`
referencing them relatively. The wiring between computed data, figures and HTML lives here."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from harness.report import figures as F
from harness.report.details import pooled
from harness.report.html import Section, esc, figure, paragraph, table, table9_html
from harness.report.overlays import overlay_figure
from harness.report.selection import gap_blocks

logger = logging.getLogger(__name__)

FIG_DIR = "figures"


def _stage_rank(pipeline: str, stage: str) -> int:
    """Position of ``stage`` in its pipeline's training order (registry), unknown stages last."""
    from harness.pipelines.registry import get_pipeline, pipeline_names

    if pipeline not in pipeline_names():
        return 99
    names = [st.name for st in get_pipeline(pipeline).stages]
    return names.index(stage) if stage in names else 99


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _save(fig, fig_dir: Path, name: str) -> str:
    F.save(fig, fig_dir / f"{name}.png")
    return f"{FIG_DIR}/{name}.png"


def _tables(data) -> dict[str, pd.DataFrame]:
    return {p: pooled(runs) for p, runs in data.groups.items() if runs}


def table9_section(data, fig_dir: Path) -> Section:
    labels = [p for p, runs in data.groups.items() if runs]
    s = Section("table9", "Table 9: " + (" vs ".join(f"pipeline {p}" for p in labels) or "no runs"))
    s.blocks.append(paragraph(data.caption))
    s.blocks.append(table9_html(data.table9))
    s.blocks.append(paragraph("Dice rows are over lesion images (true Benign or Malignant), "
                              "a missed lesion counting 0; sensitivity and specificity are malignant vs rest. "
                              "Bold: the better pipeline."))
    s.blocks.append(figure(_save(F.comparison_figure(data.table9), fig_dir, "table9_comparison"),
                           "Table 9 as bars with the 95% CIs of the table (bootstrap over patients; with several "
                           "runs over seeds and patients); black diamonds are the paper's values (Fig. 9)."))
    s.blocks.append("<h3>Paired tests on the same patients</h3>")
    if data.tests.empty:
        s.blocks.append(paragraph("No paired test: both pipelines must be evaluated on common images."))
    else:
        formats = {**{p: "3" for p in labels}, "difference": "3", "diff_ci_low": "3", "diff_ci_high": "3",
                   "statistic": "3", "p_value": "p", "p_holm": "p"}
        s.blocks.append(table(data.tests.drop(columns=["scope"]), formats,
                              "Each row's own metric is tested. Permutation: the difference of the metric between "
                              "the pipelines against its distribution when the two pipelines' predictions of whole "
                              "patients are swapped at random (statistic: the difference). Wilcoxon: signed-rank "
                              "test of per-patient mean lesion Dice (statistic: W). The scope of each test is in "
                              "table9.xlsx, sheet Paired tests. Informative: patients whose predictions differ "
                              "(permutation) or non-zero patient differences (Wilcoxon). The difference's CI is a "
                              "paired bootstrap over patients. With several seeds, runs are paired by seed and the "
                              "difference is averaged over the pairs."))
    return s


def classification_section(data, fig_dir: Path) -> Section:
    s = Section("classification", "Classification")
    tables = _tables(data)
    if not tables:
        s.blocks.append(paragraph("No run to show."))
        return s
    s.blocks.append(figure(_save(F.confusion_figure(tables), fig_dir, "confusion"),
                           "Confusion matrices (rows: true class; counts and row percentages; pooled over runs)."))
    s.blocks.append(figure(_save(F.roc_figure(tables), fig_dir, "roc"),
                           "One-vs-rest ROC curves per class with AUC (paper Fig. 12)."))
    s.blocks.append(figure(_save(F.pr_figure(tables), fig_dir, "pr"),
                           "One-vs-rest precision-recall curves with average precision; dotted: class prevalence "
                           "(paper Fig. 13)."))
    s.blocks.append("<h3>Per-class metrics</h3>")
    s.blocks.append(table(data.sheets["Per-class"], {"precision": "3", "recall": "3", "f1": "3", "auc": "3", "ap": "3"},
                          "Appendix A.2: precision, recall, F1, support; AUC/AP one-vs-rest from the probabilities."))
    s.blocks.append(figure(_save(F.confidence_figure(tables), fig_dir, "confidence"),
                           "Top-class probability for correct and wrong predictions (paper Fig. 18)."))
    return s


def segmentation_section(data, fig_dir: Path) -> Section:
    s = Section("segmentation", "Segmentation")
    tables = _tables(data)
    if not tables or not all("dice" in t.columns for t in tables.values()):
        s.blocks.append(paragraph("No per-image Dice in the predictions."))
        return s
    s.blocks.append(table(data.sheets["Segmentation"], {c: "3" for c in ("mean", "std", "median", "min", "max")},
                          "Final masks of lesion images (Table 4 layout). HD95 in pixels; NaN (a missed lesion "
                          "has no boundary distance) is excluded and counted in n_nan."))
    s.blocks.append(figure(_save(F.dice_histogram_figure(tables), fig_dir, "dice_hist"),
                           "Distribution of per-image Dice over lesion images; dashed lines at 0.7, 0.8, 0.9."))
    by_size = data.sheets["Dice by size"]
    if not by_size.empty:
        s.blocks.append(figure(_save(F.dice_by_size_figure(by_size), fig_dir, "dice_by_size"),
                               "Mean Dice by quartile of the ground-truth lesion area (equal-count quartiles)."))
        s.blocks.append(table(by_size, {"dice_mean": "3", "dice_median": "3", "min_pixels": "0", "max_pixels": "0"}))
    s.blocks.append("<h3>Best, median and worst cases</h3>")
    for p, runs in data.groups.items():
        if not runs:
            continue
        fig = overlay_figure(runs[0])
        if fig is None:
            s.blocks.append(paragraph(f"Pipeline {p}: no readable lesion image to show."))
            continue
        s.blocks.append(figure(_save(fig, fig_dir, f"overlay_{slug(p)}_{slug(runs[0].name)}"),
                               f"Pipeline {p}, run {runs[0].name}: lesion images with the highest, median and lowest "
                               "Dice; ground truth in green, prediction in red (paper Fig. 19)."))
    return s


def end_to_end_section(data, fig_dir: Path) -> Section:
    s = Section("end-to-end", "End to end and error propagation")
    e2e = data.sheets["End to end"]
    if e2e.empty:
        s.blocks.append(paragraph("No run to show."))
        return s
    s.blocks.append(table(e2e.rename(columns={"dice_mean": "dice_lesion_mean"}),
                          {c: "3" for c in e2e.columns if c not in ("pipeline", "runs")},
                          "Section 5.3: Dice over all images (a Normal image with an empty mask counts 1), over lesion "
                          "images, over lesion images with the right class; lesions with an empty mask; Normal "
                          "images with a non-empty mask."))
    prop = data.sheets["Error propagation"]
    if not prop.empty:
        s.blocks.append(figure(_save(F.error_propagation_figure(prop), fig_dir, "error_propagation"),
                               "Which stage failed on each lesion image: class wrong and/or mask bad (section 6.3)."))
        s.blocks.append(table(prop, {"fraction": "%", "dice_mean": "3"},
                              "In pipeline A a lesion called Normal gets no mask, so it appears as 'both'."))
    return s


def training_section(data, fig_dir: Path) -> Section:
    s = Section("training", "Training curves")
    any_fig = False
    for p, runs in data.groups.items():
        stages: dict[str, list[dict]] = {}
        for r in runs:
            for name, st in sorted(r.stages.items(), key=lambda kv: (_stage_rank(r.pipeline, kv[0]), kv[0])):
                if st.get("history"):
                    stages.setdefault(name, []).append({**st, "_run": r.name})
        if not stages:
            continue
        any_fig = True
        s.blocks.append(figure(_save(F.training_figure(stages, f"Pipeline {p}"), fig_dir, f"training_{slug(p)}"),
                               f"Pipeline {p}: train/validation loss and validation metric per epoch for each stage "
                               "(stages/*.json); dashed: best epoch (paper Fig. 11, 16, 21, 24)."))
    if not any_fig:
        s.blocks.append(paragraph("No stage history found (stages/*.json)."))
    return s


def runs_section(data, files: list[Path], out_dir: Path) -> Section:
    s = Section("runs", "Runs and files")
    per_run = data.sheets["Per-run"]
    if not per_run.empty:
        cols = {"run": "run", "pipeline": "pipeline", "seed": "seed", "subset": "subset", "n_images": "images",
                "balanced_accuracy": "BAcc", "macro_f1": "macro F1", "cohen_kappa": "kappa", "dice_mean": "mean Dice",
                "dice_median": "median Dice", "malignant_sensitivity": "sens.", "malignant_specificity": "spec."}
        shown = per_run[[c for c in cols if c in per_run.columns]].rename(columns=cols)
        s.blocks.append(table(shown, {"images": "0"},
                              "One row per run (every metric is in table9.xlsx, sheet Per-run)."))
        paths = ", ".join(str(p) for p in per_run["path"])
        s.blocks.append(paragraph(f"Run directories: {paths}"))
    links = "".join(f'<li><a href="{esc(f.relative_to(out_dir).as_posix())}">{esc(f.name)}</a></li>' for f in files
                    if f.is_relative_to(out_dir))
    s.blocks.append(f'<h3>Files</h3><ul class="files">{links}</ul>')
    return s


def gradcam_section(data, fig_dir: Path, provider, enabled: bool = True) -> tuple[Section, list[str]]:
    """Grad-CAM of each pipeline's classifier (the stage and input its registry spec names) and notes."""
    from harness.report.gradcam import gradcam_figures

    s = Section("gradcam", "Grad-CAM: what the classifier looks at")
    if not enabled:
        s.blocks.append(paragraph("Grad-CAM was switched off (--no-gradcam)."))
        return s, []
    figs, notes = gradcam_figures(data.groups, provider)
    for p, fig in figs.items():
        s.blocks.append(figure(_save(fig, fig_dir, f"gradcam_{slug(p)}"),
                               f"Pipeline {p}: input and Grad-CAM of the predicted class on the last convolutional "
                               "layer; representative Benign and Malignant cases, correct (✓) and wrong (✗) "
                               "(paper Fig. 5-6, 29)."))
    for note in notes:
        s.blocks.append(paragraph(note))
    return s, notes


def study_section(study_dir: Path, fig_dir: Path) -> tuple[Section, list[str]]:
    """Trials over time, best so far, parameter importances and best configs of each pipeline."""
    from harness.report import study as ST

    s = Section("study", "Study")
    summaries = ST.load_study_summaries(study_dir)
    notes: list[str] = []
    if not summaries:
        s.blocks.append(paragraph(f"No Optuna storage in {study_dir} (optuna.db)."))
        return s, notes
    for k, summ in enumerate(summaries):
        if len(summaries) > 1:
            s.blocks.append(f"<h3>{esc(summ.name)}</h3>")  # a name from optuna.db is data, never markup
        counts = ST.state_counts(summ)
        if not counts.empty:
            s.blocks.append(table(counts, caption="Trials per pipeline and state (PRUNED: stopped early by ASHA)."))
        if summ.trials["value"].notna().any():
            s.blocks.append(figure(_save(ST.trials_figure(summ), fig_dir, f"study_trials_{k}"),
                                   f"{summ.objective} of each trial by trial number and completion time; the line is "
                                   "the best complete trial so far. Trials stopped early by ASHA are PRUNED in "
                                   "Optuna and have no value (counted in the table above, not plotted); hollow: "
                                   "other non-complete trials with a value."))
        if summ.importances:
            s.blocks.append(figure(_save(ST.importance_figure(summ), fig_dir, f"study_importance_{k}"),
                                   "Parameter importances (fANOVA over the complete trials of each pipeline); "
                                   "simplex weights are the normalised weights each trial ran with."))
        best = ST.best_configs(summ)
        if not best.empty:
            s.blocks.append("<h3>Best configuration of each pipeline</h3>")
            formats = {c: "g" for c in best.columns if c not in ("pipeline", "trial")}
            s.blocks.append(table(best, formats, "Best complete trial by the first objective (PRUNED trials never "
                                                 "qualify); loss weights are the effective normalised weights."))
        for note in summ.notes:
            s.blocks.append(paragraph(note))
        notes += summ.notes
    s.blocks += gap_blocks(study_dir)
    return s, notes


def ablation_section(ab, fig_dir: Path) -> Section:
    """Per axis: metric against level (figure) and the table of every level; interactions as heatmaps."""
    from harness.report.ablation_figures import axis_figure, interaction_figure
    from harness.report.ablation_files import axis_blocks, caption, wide

    s = Section("ablations", "Ablations")
    if ab.empty:
        s.blocks.append(paragraph("No ablation runs finished."))
        return s
    s.blocks.append(paragraph("Every level of every axis re-run with the study's final seeds at the reference "
                              "configuration (the other fields as the base preset) and evaluated on the held-out test "
                              "subset; files: ablation.csv (long), ablation.xlsx, ablation.md, ablation.tex."))
    for k, (p, a, block) in enumerate(axis_blocks(ab)):
        s.blocks.append(f"<h3>{esc(a)} — {'all pipelines' if p == 'all' else 'pipeline ' + esc(p)}</h3>")
        s.blocks.append(figure(_save(axis_figure(block), fig_dir, f"ablation_{k + 1}_{slug(p)}_{slug(a)}"),
                               caption(p, a, block) + " Red star: the reference level."))
        s.blocks.append(table(wide(block), {"runs": "0"}, "Each cell: mean [95% interval] / Δ to the reference, "
                                                          "Holm-corrected p."))
    for k, inter in enumerate(ab.interactions):
        s.blocks.append("<h3>Interaction</h3>")
        s.blocks.append(figure(_save(interaction_figure(inter), fig_dir, f"ablation_interaction_{k + 1}"),
                               "Mean over seeds in every cell of the two axes (main-axis cells: the one-axis runs)."))
    return s
