"""Table 9 of the paper, recomputed with uncertainty, and the paired A-vs-B tests.

Per pipeline: the metric (the mean over runs when there are several), a bootstrap CI over images
(each run resampled with the same indices, replicates averaged over runs), and with several runs
the std and a t-based CI across seeds. The paired tests compare A and B on the images both have
evaluated; runs are paired by seed, and with several seeds each image's value is pooled over the
seeds (mean Dice; correct when correct in more than half of the seeds).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import MALIGNANT
from harness.metrics.end_to_end import is_lesion
from harness.metrics.stats import across_seeds, bootstrap_replicates, mcnemar, percentile_ci, wilcoxon
from harness.report.loader import RunData

logger = logging.getLogger(__name__)

PIPELINES = ("A", "B")


@dataclass(frozen=True)
class Row:
    """One Table 9 row: its name in the paper, our metric key, the paper's values."""

    name: str
    key: str
    paper_a: float
    paper_b: float
    section: str
    percent: bool = False


# The paper's Table 9 (section 6.1): the only hard-coded results in the harness.
TABLE9_ROWS: tuple[Row, ...] = (
    Row("Balanced Accuracy", "balanced_accuracy", 0.8439, 0.8040, "Classification performance"),
    Row("Macro F1", "macro_f1", 0.8307, 0.8049, "Classification performance"),
    Row("Cohen's Kappa", "cohen_kappa", 0.7465, 0.7364, "Classification performance"),
    Row("Mean Dice", "dice_mean", 0.7537, 0.8249, "Segmentation performance"),
    Row("Median Dice", "dice_median", 0.9047, 0.9324, "Segmentation performance"),
    Row("Dice >= 0.7", "dice_ge_0.7", 0.837, 0.837, "Segmentation performance", percent=True),
    Row("Dice >= 0.8", "dice_ge_0.8", 0.78, 0.814, "Segmentation performance", percent=True),
    Row("Dice >= 0.9", "dice_ge_0.9", 0.526, 0.658, "Segmentation performance", percent=True),
    Row("Malignant Sensitivity", "malignant_sensitivity", 0.9330, 0.8630, "Clinical metrics (malignancy)"),
    Row("Malignant Specificity", "malignant_specificity", 0.9239, 0.8596, "Clinical metrics (malignancy)"),
)
ROW_BY_NAME = {r.name: r for r in TABLE9_ROWS}

TABLE9_COLUMNS = ["metric", "A", "B", "paper_A", "paper_B",
                  "A_ci_low", "A_ci_high", "B_ci_low", "B_ci_high",
                  "A_std", "A_seed_ci_low", "A_seed_ci_high", "B_std", "B_seed_ci_low", "B_seed_ci_high",
                  "A_runs", "B_runs", "test", "p_value"]


def _bootstrap(runs: list[RunData], n_boot: int, seed: int, level: float) -> dict[str, tuple[float, float]]:
    """CI over images of the run-averaged metrics (same resampling indices for every run)."""
    reps = []
    for r in runs:
        p = r.predictions
        dice = p["dice"].to_numpy(float) if "dice" in p.columns else None
        reps.append(bootstrap_replicates(p["label"].to_numpy(int), p["pred_label"].to_numpy(int), dice, n_boot, seed))
    keys = set.intersection(*(set(x) for x in reps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate -> NaN
        return {k: percentile_ci(np.nanmean(np.stack([x[k] for x in reps]), axis=0), level) for k in keys}


def _pipeline_columns(runs: list[RunData], n_boot: int, seed: int, level: float) -> dict[str, dict[str, float]]:
    """Per Table 9 key: value, ci_low, ci_high, std, seed_ci_low, seed_ci_high, runs."""
    nan = float("nan")
    if not runs:
        return {r.key: {"": nan, "_ci_low": nan, "_ci_high": nan, "_std": nan, "_seed_ci_low": nan,
                        "_seed_ci_high": nan, "_runs": 0} for r in TABLE9_ROWS}
    boot = _bootstrap(runs, n_boot, seed, level)
    out = {}
    for row in TABLE9_ROWS:
        bounds = (-1.0, 1.0) if row.key == "cohen_kappa" else (0.0, 1.0)  # every Table 9 metric is bounded
        s = across_seeds(np.array([r.metrics[row.key] for r in runs]), level, bounds)
        lo, hi = boot.get(row.key, (nan, nan))
        out[row.key] = {"": s["mean"], "_ci_low": lo, "_ci_high": hi, "_std": s["std"],
                        "_seed_ci_low": s["ci_low"], "_seed_ci_high": s["ci_high"], "_runs": len(runs)}
    return out


# ------------------------------------------------------------------------------------------------
# Paired A-vs-B tests


def pair_runs(a: list[RunData], b: list[RunData]) -> tuple[list[RunData], list[RunData]]:
    """Runs of A and B with a seed in common (all runs when no seed is shared)."""
    common = {r.seed for r in a} & {r.seed for r in b} - {None}
    if not common:
        return a, b
    dropped = [r.name for r in a + b if r.seed not in common]
    if dropped:
        logger.info("paired tests use seeds %s only; not paired: %s", sorted(common), ", ".join(dropped))
    return [r for r in a if r.seed in common], [r for r in b if r.seed in common]


def pooled_per_image(runs: list[RunData]) -> pd.DataFrame:
    """Per image (index image_id): label, mean Dice over runs, fraction of runs correct, fraction
    of runs calling it malignant - over the images every run has evaluated."""
    frames = []
    for r in runs:
        p = r.predictions.set_index("image_id")
        frames.append(pd.DataFrame({
            "label": p["label"].astype(int),
            "dice": p["dice"].astype(float) if "dice" in p.columns else np.nan,
            "correct": (p["pred_label"] == p["label"]).astype(float),
            "called_malignant": (p["pred_label"] == MALIGNANT).astype(float),
        }))
    common = frames[0].index
    for f in frames[1:]:
        common = common.intersection(f.index)
    stacked = pd.concat([f.loc[common] for f in frames], keys=range(len(frames)))
    return stacked.groupby(level=1).mean().loc[common.sort_values()]


def paired_tests(a: list[RunData], b: list[RunData]) -> pd.DataFrame:
    """McNemar (correctness overall, on malignant images, on non-malignant images) and Wilcoxon
    (Dice on lesion images) of A vs B on the images both evaluated."""
    columns = ["test", "scope", "rows", "n_images", "n_informative", "A", "B", "statistic", "p_value"]
    if not a or not b:
        return pd.DataFrame(columns=columns)
    a, b = pair_runs(a, b)
    pa, pb = pooled_per_image(a), pooled_per_image(b)
    common = pa.index.intersection(pb.index)
    if len(common) == 0:
        logger.warning("pipelines A and B share no evaluated image: no paired tests")
        return pd.DataFrame(columns=columns)
    pa, pb = pa.loc[common], pb.loc[common]
    if not (pa["label"].to_numpy() == pb["label"].to_numpy()).all():
        logger.warning("A and B disagree on the true label of some images; paired tests use A's labels")
    labels = pa["label"].to_numpy()
    malignant = labels == MALIGNANT
    lesion = is_lesion(labels)
    rows = []

    def _mc(scope: str, row_names: str, sel: np.ndarray, col: str, positive: bool) -> None:
        ca = (pa[col].to_numpy()[sel] > 0.5) == positive
        cb = (pb[col].to_numpy()[sel] > 0.5) == positive
        if sel.sum() == 0:
            return
        t = mcnemar(ca, cb)
        rows.append({"test": "McNemar (exact)", "scope": scope, "rows": row_names, "n_images": int(sel.sum()),
                     "n_informative": t.n, "A": float(ca.mean()), "B": float(cb.mean()),
                     "statistic": t.statistic, "p_value": t.pvalue})

    everything = np.ones(len(labels), bool)
    _mc("all images: correct class", "Balanced Accuracy; Macro F1; Cohen's Kappa", everything, "correct", True)
    _mc("malignant images: called malignant", "Malignant Sensitivity", malignant, "called_malignant", True)
    _mc("non-malignant images: not called malignant", "Malignant Specificity", ~malignant, "called_malignant", False)
    da, db = pa["dice"].to_numpy()[lesion], pb["dice"].to_numpy()[lesion]
    if lesion.any() and not (np.isnan(da).all() or np.isnan(db).all()):
        t = wilcoxon(da, db)
        rows.append({"test": "Wilcoxon signed-rank", "scope": "lesion images: Dice", "rows":
                     "Mean Dice; Median Dice; Dice >= 0.7; Dice >= 0.8; Dice >= 0.9", "n_images": int(lesion.sum()),
                     "n_informative": t.n, "A": float(np.nanmean(da)), "B": float(np.nanmean(db)),
                     "statistic": t.statistic, "p_value": t.pvalue})
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------


def build_table9(
    groups: dict[str, list[RunData]], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 9, paired tests). ``groups`` maps "A"/"B" to their runs; a missing pipeline gives
    NaN columns, not an error."""
    cols = {p: _pipeline_columns(groups.get(p, []), n_boot, seed, level) for p in PIPELINES}
    tests = paired_tests(groups.get("A", []), groups.get("B", []))
    test_of_row = {}
    for _, t in tests.iterrows():
        for name in str(t["rows"]).split("; "):
            test_of_row[name] = (t["test"], t["p_value"])
    records = []
    for row in TABLE9_ROWS:
        rec = {"metric": row.name, "paper_A": row.paper_a, "paper_B": row.paper_b}
        for p in PIPELINES:
            rec.update({f"{p}{suffix}": v for suffix, v in cols[p][row.key].items()})
        rec["test"], rec["p_value"] = test_of_row.get(row.name, ("", float("nan")))
        records.append(rec)
    table = pd.DataFrame(records)[TABLE9_COLUMNS]
    table["A_runs"] = table["A_runs"].astype(int)
    table["B_runs"] = table["B_runs"].astype(int)
    return table, tests
