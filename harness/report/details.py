"""Detail tables beside Table 9: per class, Dice by lesion size, segmentation summary, end to end,
error propagation, one row per run. With several runs of a pipeline, per-image tables pool the
rows of every run (counts add up over seeds); the per-run table keeps them apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import CLASS_NAMES
from harness.metrics import PROB_COLUMNS
from harness.metrics.classification import one_vs_rest_scores, per_class_table
from harness.metrics.end_to_end import error_propagation_table, is_lesion
from harness.metrics.segmentation import SEG_METRICS, dice_by_size, summary_table
from harness.metrics.stats import across_seeds
from harness.report.loader import RunData

END_TO_END_KEYS = ("dice_all_mean", "dice_mean", "dice_conditional_mean", "missed_lesion_rate", "false_lesion_rate")


def pooled(runs: list[RunData]) -> pd.DataFrame:
    """Every run's prediction rows, with a ``run`` column."""
    return pd.concat([r.predictions.assign(run=r.name) for r in runs], ignore_index=True)


def _per_pipeline(groups: dict[str, list[RunData]], build) -> pd.DataFrame:
    frames = [build(pooled(runs)).assign(pipeline=p) for p, runs in groups.items() if runs]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out[["pipeline", *[c for c in out.columns if c != "pipeline"]]]


def per_class(groups: dict[str, list[RunData]]) -> pd.DataFrame:
    """Appendix A.2 per class, plus one-vs-rest ROC AUC and average precision."""

    def build(df: pd.DataFrame) -> pd.DataFrame:
        t = per_class_table(df["label"].to_numpy(int), df["pred_label"].to_numpy(int)).reset_index()
        if all(c in df.columns for c in PROB_COLUMNS):
            s = one_vs_rest_scores(df["label"].to_numpy(int), df[list(PROB_COLUMNS)].to_numpy(float))
            t["auc"] = [s[f"auc_{c.lower()}"] for c in CLASS_NAMES]
            t["ap"] = [s[f"ap_{c.lower()}"] for c in CLASS_NAMES]
        return t

    return _per_pipeline(groups, build)


def dice_by_lesion_size(groups: dict[str, list[RunData]]) -> pd.DataFrame:
    """End-to-end Dice of lesion images by quartile of the ground-truth lesion area."""

    def build(df: pd.DataFrame) -> pd.DataFrame:
        les = df[is_lesion(df["label"].to_numpy())]
        if les.empty or "gt_pixels" not in les.columns:
            return pd.DataFrame()
        return dice_by_size(les["dice"].to_numpy(float), les["gt_pixels"].to_numpy(float))

    return _per_pipeline(groups, build)


def segmentation_summary(groups: dict[str, list[RunData]]) -> pd.DataFrame:
    """Table 4 layout over lesion images: mean, std, median, min, max of each mask metric, and HD95
    with a missed lesion at the image diagonal (``hd95_penalised``) when the runs have it."""

    def build(df: pd.DataFrame) -> pd.DataFrame:
        return summary_table(df[is_lesion(df["label"].to_numpy())], (*SEG_METRICS, "hd95_penalised"))

    return _per_pipeline(groups, build)


def error_propagation(groups: dict[str, list[RunData]], good_dice: float = 0.5) -> pd.DataFrame:
    """Lesion images by classification right/wrong x segmentation good/bad (section 6.3)."""

    def build(df: pd.DataFrame) -> pd.DataFrame:
        return error_propagation_table(df["label"].to_numpy(int), df["pred_label"].to_numpy(int),
                                       df["dice"].to_numpy(float), good_dice)

    return _per_pipeline(groups, build)


def end_to_end(groups: dict[str, list[RunData]]) -> pd.DataFrame:
    """Section 5.3 numbers per pipeline (mean over runs)."""
    rows = []
    for p, runs in groups.items():
        if runs:
            rows.append({"pipeline": p, "runs": len(runs),
                         **{k: across_seeds(np.array([r.metrics[k] for r in runs]))["mean"] for k in END_TO_END_KEYS}})
    return pd.DataFrame(rows)


def per_run(runs: list[RunData], groups: dict[str, list[RunData]] | None = None) -> pd.DataFrame:
    """One row per run: identity (its column group in ``groups``, e.g. a variant "B (roi.margin=0.3)",
    else its pipeline label), patients and every metric of ``run_metrics``."""
    group_of = {id(r): label for label, rs in (groups or {}).items() for r in rs}
    rows = [{"run": r.name, "pipeline": group_of.get(id(r), r.label), "seed": r.seed, "subset": r.subset,
             "path": str(r.path), "n_patients": int(r.predictions["patient_id"].nunique())
             if "patient_id" in r.predictions.columns else np.nan, "patient_ids": r.patient_ids, **r.metrics}
            for r in runs]
    return pd.DataFrame(rows)
