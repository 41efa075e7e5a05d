"""Table 9 of the paper, recomputed with uncertainty, for any number of pipelines, and the pairwise
paired tests with Holm's correction. The statistical unit is the patient.

Rows are the registered metrics with a Table 9 section (:func:`harness.metrics.list_metrics`);
the paper's values come from their declarations, keyed by pipeline name (the lowercase label).
Per pipeline: the metric (the mean over runs when there are several); a bootstrap CI over patients
(all images of a patient resampled together, the same resamples for every run, replicates averaged
over runs); with several runs the std over runs and a seed-and-patient bootstrap CI of their mean,
and with at least three a t-based CI of the mean, clipped to the metric's bounds. Every pair of
pipelines is compared on the images both evaluated, runs paired by seed, each row with the paired
test its metric names (:mod:`harness.metrics.paired`: a patient-level permutation test of the
row's own metric, Wilcoxon on per-patient Dice); the difference gets a paired patient-bootstrap CI.
Per row, the p-values of the pairs are Holm-adjusted.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from harness.metrics import Metric, list_metrics
from harness.metrics.paired import PairedData, get_paired_test, paired_difference
from harness.metrics.stats import (
    across_seeds,
    bootstrap_replicates,
    holm,
    percentile_ci,
    seed_patient_bootstrap,
)
from harness.report.loader import RunData

logger = logging.getLogger(__name__)

PIPELINE_SUFFIXES = ("", "_ci_low", "_ci_high", "_std", "_hier_ci_low", "_hier_ci_high", "_seed_ci_low",
                     "_seed_ci_high", "_runs")
"""Per pipeline: value; patient-bootstrap CI; std over runs; seed-and-patient bootstrap CI (>= 2
runs); t CI over seeds (>= 3 runs); number of runs."""
TEST_COLUMNS = ["pair", "metric", "test", "scope", "n_patients", "n_images", "n_informative"]
TEST_TAIL = ["difference", "diff_ci_low", "diff_ci_high", "statistic", "p_value", "p_holm"]
SKIPPED = ["strategy", "key"]


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
    return [c for c in tests.columns if c not in (*TEST_COLUMNS, *TEST_TAIL, *SKIPPED)]


# ------------------------------------------------------------------------------------------------
# One pipeline's columns


def _columns(p: pd.DataFrame) -> dict[str, np.ndarray]:
    """The numeric per-image columns of a predictions table (labels as int)."""
    out = {c: p[c].to_numpy() for c in p.columns if pd.api.types.is_numeric_dtype(p[c])}
    for c in ("label", "pred_label"):
        out[c] = p[c].to_numpy().astype(np.int64)
    return out


def patients_of(run: RunData) -> np.ndarray:
    """The patient of each evaluated image of ``run`` (the image id when it has none)."""
    p = run.predictions
    return (p["patient_id"] if "patient_id" in p.columns else p["image_id"]).astype(str).to_numpy()


def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate -> NaN
        return np.nanmean(x, axis=axis)


def _pipeline_columns(runs: list[RunData], rows: list[Metric], n_boot: int, seed: int,
                      level: float) -> dict[str, dict[str, float]]:
    """Per Table 9 key: value, patient-bootstrap CI, std, seed-and-patient CI, t CI, runs."""
    nan = float("nan")
    if not runs:
        return {m.key: {**dict.fromkeys(PIPELINE_SUFFIXES, nan), "_runs": 0} for m in rows}
    keys = [m.key for m in rows]
    reps = [bootstrap_replicates(_columns(r.predictions), n_boot, seed, keys, patients_of(r)) for r in runs]
    out = {}
    for m in rows:
        by_run = np.stack([x[m.key] for x in reps])  # runs x n_boot, the same patient resamples in every run
        lo, hi = percentile_ci(_nanmean(by_run), level)
        hier = (percentile_ci(seed_patient_bootstrap(by_run, seed), level) if len(runs) > 1 else (nan, nan))
        s = across_seeds(np.array([r.metrics.get(m.key, nan) for r in runs], dtype=float), level, m.bounds)
        out[m.key] = {"": s[m.aggregate], "_ci_low": lo, "_ci_high": hi, "_std": s["std"], "_hier_ci_low": hier[0],
                      "_hier_ci_high": hier[1], "_seed_ci_low": s["ci_low"], "_seed_ci_high": s["ci_high"],
                      "_runs": len(runs)}
    return out


# ------------------------------------------------------------------------------------------------
# Paired tests


def pair_runs(a: list[RunData], b: list[RunData]) -> list[tuple[RunData, RunData]]:
    """Seed pairs of two pipelines' runs: runs of a shared seed, in order (when no seed is shared,
    the runs in the order given); a run without a partner is left out, with a note."""
    common = {r.seed for r in a} & {r.seed for r in b} - {None}
    if common:
        pairs = [pair for s in sorted(common, key=str)
                 for pair in zip([r for r in a if r.seed == s], [r for r in b if r.seed == s], strict=False)]
    else:
        pairs = list(zip(a, b, strict=False))
    used = {id(r) for pair in pairs for r in pair}
    dropped = [r.name for r in a + b if id(r) not in used]
    if dropped:
        logger.info("paired tests use %d seed pair(s); not paired: %s", len(pairs), ", ".join(dropped))
    return pairs


def paired_data(first: str, second: str, a: list[RunData], b: list[RunData]) -> PairedData | None:
    """The two pipelines' per-image columns on the images every paired run evaluated (sorted by
    image id), with the first pipeline's patients; ``None`` when they share no image."""
    pairs = pair_runs(a, b)
    if not pairs:
        return None
    frames = [[r.predictions.set_index("image_id") for r in side] for side in zip(*pairs, strict=True)]
    common = frames[0][0].index
    for f in frames[0] + frames[1]:
        common = common.intersection(f.index)
    if len(common) == 0:
        logger.warning("pipelines %s and %s share no evaluated image: no paired tests", first, second)
        return None
    common = common.sort_values()
    sides = [tuple(_columns(f.loc[common].reset_index()) for f in side) for side in frames]
    if not all((c["label"] == sides[0][0]["label"]).all() for c in sides[1]):
        logger.warning("%s and %s disagree on the true label of some images; paired tests use %s's labels",
                       first, second, first)
    patients = [f.loc[common, "patient_id"].astype(str).to_numpy() if "patient_id" in f.columns
                else common.to_numpy().astype(str) for f in (frames[0][0], frames[1][0])]
    if not (patients[0] == patients[1]).all():
        logger.warning("%s and %s disagree on the patient of some images; paired tests use %s's patients",
                       first, second, first)
    return PairedData(sides[0], sides[1], patients[0])


def _test_pair(first: str, second: str, a: list[RunData], b: list[RunData], rows: list[Metric], n_boot: int,
               seed: int, level: float) -> list[dict]:
    """One record per Table 9 row for the pipelines ``first`` and ``second``: the row's paired test
    and the difference with its paired patient-bootstrap CI (the pipelines' values in the columns
    named after them)."""
    data = paired_data(first, second, a, b)
    if data is None:
        return []
    diffs = paired_difference(data, rows, n_boot, seed, level)
    outcomes: dict[str, dict] = {}
    tests: dict[str, str] = {}
    for key in sorted({m.test for m in rows if m.test}):  # by strategy name: a stable order
        named = [m for m in rows if m.test == key]
        strategy = get_paired_test(key, field=f"Table 9 test of {', '.join(m.key for m in named)}")
        for k, out in strategy.run(data, named, n_boot, seed).items():
            outcomes[k], tests[k] = out, key
    records = []
    for m in rows:
        if m.key not in outcomes or m.key not in diffs:
            continue
        out, d, strategy = outcomes[m.key], diffs[m.key], get_paired_test(tests[m.key])
        records.append({"strategy": strategy.key, "key": m.key, "pair": f"{first} vs {second}", "metric": m.name,
                        "test": strategy.test, "scope": strategy.scope, "n_patients": out["n_patients"],
                        "n_images": out["n_images"], "n_informative": out["n_informative"], first: d["first"],
                        second: d["second"], "difference": d["difference"], "diff_ci_low": d["ci_low"],
                        "diff_ci_high": d["ci_high"], "statistic": out["statistic"], "p_value": out["p_value"]})
    return records


def _paired_records(groups: Mapping[str, list[RunData]], rows: list[Metric], n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """Every pair's tests with ``strategy``, ``key`` and ``p_holm`` (Holm over the pairs, per row)."""
    labels = list(groups)
    columns = [*SKIPPED, *TEST_COLUMNS, *labels, *TEST_TAIL]
    records = [rec for first, second in pairs_of(labels) if groups[first] and groups[second]
               for rec in _test_pair(first, second, groups[first], groups[second], rows, n_boot, seed, level)]
    tests = pd.DataFrame(records, columns=columns)
    for sel in tests.groupby("key", sort=False).groups.values():
        tests.loc[sel, "p_holm"] = holm(tests.loc[sel, "p_value"].to_numpy(float))
    return tests.astype({"p_holm": float})


def paired_tests(groups: Mapping[str, list[RunData]], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired tests of every pair of pipelines with runs, on the images both evaluated: one row per
    pair and Table 9 row, with the row's own test (:mod:`harness.metrics.paired`), the difference
    and its paired patient-bootstrap CI, the raw ``p_value`` and ``p_holm`` (Holm-adjusted over
    the pairs). Pipelines outside a pair have NaN in their column."""
    return _paired_records(groups, list_metrics(table9=True), n_boot, seed).drop(columns=SKIPPED)


# ------------------------------------------------------------------------------------------------


def build_table9(
    groups: Mapping[str, list[RunData]], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 9, paired tests). ``groups`` maps pipeline labels ("A", "B", "C", ...) to their runs,
    in column order; a pipeline without runs gives NaN columns, not an error. Columns:
    :func:`table9_columns`. ``n_boot`` is the number of bootstrap replicates and of permutations."""
    labels = list(groups)
    rows = list_metrics(table9=True)
    cols = {p: _pipeline_columns(groups[p], rows, n_boot, seed, level) for p in labels}
    tests = _paired_records(groups, rows, n_boot, seed, level)
    pairs = pairs_of(labels)
    by_test = {(t["key"], t["pair"]): t for _, t in tests.iterrows()}
    records = []
    for m in rows:
        rec: dict = {"metric": m.name}
        for p in labels:
            rec.update({f"{p}{suffix}": v for suffix, v in cols[p][m.key].items()})
            rec[f"paper_{p}"] = m.paper.get(p.lower(), float("nan"))
        found = [by_test.get((m.key, f"{a} vs {b}")) for a, b in pairs]
        rec["test"] = next((t["test"] for t in found if t is not None), "")
        for pair, t in zip(pairs, found, strict=True):
            raw, adj = p_columns(pair, len(pairs))
            rec[raw], rec[adj] = (float("nan"), float("nan")) if t is None else (t["p_value"], t["p_holm"])
        records.append(rec)
    table = pd.DataFrame(records, columns=table9_columns(labels, rows))
    return table.astype({f"{p}_runs": int for p in labels}), tests.drop(columns=SKIPPED)
