"""Table 9 of the paper, recomputed with uncertainty, for any number of pipelines, and the pairwise
paired tests with Holm's correction.

Rows are the registered metrics with a Table 9 section (:func:`harness.metrics.list_metrics`);
the paper's values come from their declarations, keyed by pipeline name (the lowercase label).
Per pipeline: the metric (the mean over runs when there are several), a bootstrap CI over images
(each run resampled with the same indices, replicates averaged over runs), and with several runs
the std and a t-based CI across seeds, clipped to the metric's bounds. Every pair of pipelines is
compared on the images both evaluated with each row's paired test strategy; runs are paired by
seed, and with several seeds each image's value is pooled over the seeds (mean Dice; correct when
correct in more than half of the seeds). Per row, the p-values of the pairs are Holm-adjusted.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from harness import MALIGNANT
from harness.metrics import Metric, list_metrics
from harness.metrics.paired import get_paired_test
from harness.metrics.stats import across_seeds, bootstrap_replicates, holm, percentile_ci
from harness.report.loader import RunData

logger = logging.getLogger(__name__)

PIPELINE_SUFFIXES = ("", "_ci_low", "_ci_high", "_std", "_seed_ci_low", "_seed_ci_high", "_runs")
TEST_COLUMNS = ["pair", "test", "scope", "rows", "n_images", "n_informative"]


def __getattr__(name: str):
    """``TABLE9_ROWS``: the Table 9 metrics in row order, read from the registry on every access
    so that it never goes stale."""
    if name == "TABLE9_ROWS":
        return tuple(list_metrics(table9=True))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pairs_of(labels: list[str]) -> list[tuple[str, str]]:
    """Every pair of pipelines, in the order the labels are given: A-B, A-C, B-C."""
    return list(combinations(labels, 2))


def p_columns(pair: tuple[str, str], n_pairs: int) -> tuple[str, str]:
    """(raw, Holm) p-value columns of ``pair``: ``p_value``/``p_holm`` when there is one pair (two
    pipelines, as in the paper), else ``p_value_A_B``/``p_holm_A_B``."""
    suffix = "" if n_pairs == 1 else f"_{pair[0]}_{pair[1]}"
    return f"p_value{suffix}", f"p_holm{suffix}"


def paper_labels(labels: list[str], rows: list[Metric] | None = None) -> list[str]:
    """The pipelines for which the paper reports at least one Table 9 value."""
    rows = list_metrics(table9=True) if rows is None else rows
    return [p for p in labels if any(p.lower() in m.paper for m in rows)]


def table9_columns(labels: list[str], rows: list[Metric] | None = None) -> list[str]:
    """``metric``, per pipeline its value, ``paper_<L>`` (when the paper has values), CIs, std and
    runs, then ``test`` and the raw and Holm p-value of every pair."""
    with_paper = set(paper_labels(labels, rows))
    cols = ["metric"]
    for p in labels:
        cols += [p] + ([f"paper_{p}"] if p in with_paper else []) + [f"{p}{s}" for s in PIPELINE_SUFFIXES[1:]]
    pairs = pairs_of(labels)
    return cols + ["test"] + [c for pair in pairs for c in p_columns(pair, len(pairs))]


def pipelines_of(table: pd.DataFrame) -> list[str]:
    """The pipeline labels of a Table 9, in column order."""
    return [c[: -len("_runs")] for c in table.columns if c.endswith("_runs")]


def tests_pipelines(tests: pd.DataFrame) -> list[str]:
    """The pipeline columns of a paired-tests table (a pipeline's summary where it is in the pair)."""
    return [c for c in tests.columns if c not in (*TEST_COLUMNS, "strategy", "statistic", "p_value", "p_holm")]


# ------------------------------------------------------------------------------------------------
# One pipeline's columns


def _columns(p: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: p[c].to_numpy() for c in p.columns}


def _bootstrap(runs: list[RunData], rows: list[Metric], n_boot: int, seed: int,
               level: float) -> dict[str, tuple[float, float]]:
    """CI over images of the run-averaged metrics (same resampling indices for every run)."""
    keys = [m.key for m in rows]
    reps = [bootstrap_replicates(_columns(r.predictions), n_boot, seed, keys) for r in runs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate -> NaN
        return {k: percentile_ci(np.nanmean(np.stack([x[k] for x in reps]), axis=0), level) for k in keys}


def _pipeline_columns(runs: list[RunData], rows: list[Metric], n_boot: int, seed: int,
                      level: float) -> dict[str, dict[str, float]]:
    """Per Table 9 key: value, ci_low, ci_high, std, seed_ci_low, seed_ci_high, runs."""
    nan = float("nan")
    if not runs:
        return {m.key: {**dict.fromkeys(PIPELINE_SUFFIXES, nan), "_runs": 0} for m in rows}
    boot = _bootstrap(runs, rows, n_boot, seed, level)
    out = {}
    for m in rows:
        s = across_seeds(np.array([r.metrics.get(m.key, nan) for r in runs], dtype=float), level, m.bounds)
        lo, hi = boot[m.key]
        out[m.key] = {"": s[m.aggregate], "_ci_low": lo, "_ci_high": hi, "_std": s["std"],
                      "_seed_ci_low": s["ci_low"], "_seed_ci_high": s["ci_high"], "_runs": len(runs)}
    return out


# ------------------------------------------------------------------------------------------------
# Paired tests


def pair_runs(a: list[RunData], b: list[RunData]) -> tuple[list[RunData], list[RunData]]:
    """Runs of two pipelines with a seed in common (all runs when no seed is shared)."""
    common = {r.seed for r in a} & {r.seed for r in b} - {None}
    if not common:
        return a, b
    dropped = [r.name for r in a + b if r.seed not in common]
    if dropped:
        logger.info("paired tests use seeds %s only; not paired: %s", sorted(c for c in common if c is not None),
                    ", ".join(dropped))
    return [r for r in a if r.seed in common], [r for r in b if r.seed in common]


def pooled_per_image(runs: list[RunData]) -> pd.DataFrame:
    """Per image (index image_id): label, mean Dice over runs, fraction of runs correct, fraction
    of runs calling it malignant - over the images every run has evaluated
    (:data:`harness.metrics.paired.PER_IMAGE_COLUMNS`)."""
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


def _test_pair(first: str, second: str, a: list[RunData], b: list[RunData], rows: list[Metric]) -> list[dict]:
    """One record per paired test strategy the Table 9 rows use, for the pipelines ``first`` and
    ``second`` (per-pipeline summaries in the columns named after them)."""
    a, b = pair_runs(a, b)
    pa, pb = pooled_per_image(a), pooled_per_image(b)
    common = pa.index.intersection(pb.index)
    if len(common) == 0:
        logger.warning("pipelines %s and %s share no evaluated image: no paired tests", first, second)
        return []
    pa, pb = pa.loc[common], pb.loc[common]
    if not (pa["label"].to_numpy() == pb["label"].to_numpy()).all():
        logger.warning("%s and %s disagree on the true label of some images; paired tests use %s's labels",
                       first, second, first)
    records = []
    for key in sorted({m.test for m in rows if m.test}):  # by strategy name: a stable order
        strategy = get_paired_test(key, field=f"Table 9 test of {', '.join(m.key for m in rows if m.test == key)}")
        out = strategy.run(pa, pb)
        if out is None:
            continue
        names = "; ".join(m.name for m in rows if m.test == key)
        records.append({"strategy": key, "pair": f"{first} vs {second}", "test": strategy.test, "scope": strategy.scope,
                        "rows": names, "n_images": out["n_images"], "n_informative": out["n_informative"],
                        first: out["first"], second: out["second"], "statistic": out["statistic"],
                        "p_value": out["p_value"]})
    return records


def _paired_records(groups: Mapping[str, list[RunData]], rows: list[Metric]) -> pd.DataFrame:
    """Every pair's tests with ``strategy`` and ``p_holm`` (Holm over the pairs, per strategy)."""
    labels = list(groups)
    columns = ["strategy", *TEST_COLUMNS, *labels, "statistic", "p_value", "p_holm"]
    records = [rec for first, second in pairs_of(labels) if groups[first] and groups[second]
               for rec in _test_pair(first, second, groups[first], groups[second], rows)]
    tests = pd.DataFrame(records, columns=columns)
    for sel in tests.groupby("strategy", sort=False).groups.values():
        tests.loc[sel, "p_holm"] = holm(tests.loc[sel, "p_value"].to_numpy(float))
    return tests.astype({"p_holm": float})


def paired_tests(groups: Mapping[str, list[RunData]]) -> pd.DataFrame:
    """Paired tests of every pair of pipelines with runs, on the images both evaluated: one row per
    pair and test strategy of the Table 9 rows (McNemar on correctness overall, on malignant and on
    non-malignant images; Wilcoxon on lesion Dice), with the raw ``p_value`` and ``p_holm``
    (Holm-adjusted over the pairs). Pipelines outside a pair have NaN in their column."""
    return _paired_records(groups, list_metrics(table9=True)).drop(columns="strategy")


# ------------------------------------------------------------------------------------------------


def build_table9(
    groups: Mapping[str, list[RunData]], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 9, paired tests). ``groups`` maps pipeline labels ("A", "B", "C", ...) to their runs,
    in column order; a pipeline without runs gives NaN columns, not an error. Columns:
    :func:`table9_columns`."""
    labels = list(groups)
    rows = list_metrics(table9=True)
    cols = {p: _pipeline_columns(groups[p], rows, n_boot, seed, level) for p in labels}
    tests = _paired_records(groups, rows)
    pairs = pairs_of(labels)
    by_test = {(t["strategy"], t["pair"]): t for _, t in tests.iterrows()}
    records = []
    for m in rows:
        rec: dict = {"metric": m.name}
        for p in labels:
            rec.update({f"{p}{suffix}": v for suffix, v in cols[p][m.key].items()})
            rec[f"paper_{p}"] = m.paper.get(p.lower(), float("nan"))
        found = [by_test.get((m.test, f"{a} vs {b}")) for a, b in pairs]
        rec["test"] = next((t["test"] for t in found if t is not None), "")
        for pair, t in zip(pairs, found, strict=True):
            raw, adj = p_columns(pair, len(pairs))
            rec[raw], rec[adj] = (float("nan"), float("nan")) if t is None else (t["p_value"], t["p_holm"])
        records.append(rec)
    table = pd.DataFrame(records, columns=table9_columns(labels, rows))
    return table.astype({f"{p}_runs": int for p in labels}), tests.drop(columns="strategy")
