"""The ablation table: every level of every axis, measured on test, against the reference level.

A study with ``final.mode: levels`` writes ``final/plan.json`` (:mod:`harness.tune.levels`): which
final run measures which (axis, level) cell. Per pipeline and axis, the levels' runs are compared
exactly as Table 9 compares pipelines (:func:`harness.report.table9.build_table9` with one group per
level): the same means, intervals and paired tests, so the two tables can never disagree on method.
Each level's difference to the reference level keeps its paired test's raw p-value, Holm-corrected
across the axis's levels (the family is "this axis"); the reference row has delta 0 and no test.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.registry import Metric, list_metrics
from harness.metrics.stats import holm
from harness.pipelines.registry import label_of
from harness.report.loader import RunData
from harness.report.table9 import build_table9
from harness.tune.levels import PIPELINE_AXIS, level_label

logger = logging.getLogger(__name__)

COLUMNS = ["pipeline", "axis", "level", "metric", "mean", "ci_low", "ci_high", "n_runs", "delta", "p_value"]
HEADLINE = ("balanced_accuracy", "dice_mean")
ALL = "all"
"""The ``pipeline`` column of the pipeline axis's rows (it compares pipelines, not levels within one)."""


@dataclass
class Ablation:
    """Long table (``COLUMNS`` plus ``reference``, ``metric_name``, ``p_raw``) and interaction tables."""

    table: pd.DataFrame
    interactions: list[pd.DataFrame] = field(default_factory=list)
    reference: dict[tuple[str, str], str] = field(default_factory=dict)  # (pipeline, axis) -> reference label

    @property
    def empty(self) -> bool:
        return self.table.empty


def _runs_by_dir(runs: Sequence[RunData]) -> dict[str, RunData]:
    return {r.path.name: r for r in runs}


def _cells(plan: dict[str, Any], runs: Sequence[RunData]) -> list[tuple[dict[str, Any], RunData, str]]:
    """(cell, run, pipeline) for every planned run that finished."""
    by_dir = _runs_by_dir(runs)
    out: list[tuple[dict[str, Any], RunData, str]] = []
    for entry in plan.get("runs", []):
        run = by_dir.get(entry["dir"])
        if run is None:
            logger.warning("ablation: final run %s missing; its levels have fewer runs", entry["dir"])
            continue
        out.extend((cell, run, entry["pipeline"]) for cell in entry["cells"])
    return out


def _level_groups(cells, pipeline: str, axis: str, levels: list[Any], ref: Any) -> dict[str, list[RunData]]:
    """Level label -> runs (reference first), for one pipeline and axis."""
    groups: dict[str, list[RunData]] = {level_label(ref): []}
    groups.update({level_label(lv): [] for lv in levels})
    for cell, run, p in cells:
        if p != pipeline or "axis2" in cell:
            continue
        if cell["axis"] == axis:
            groups[level_label(cell["level"])].append(run)
    return {k: sorted(v, key=lambda r: (r.seed or 0)) for k, v in groups.items() if v}


def _rows(display: str, axis: str, groups: dict[str, list[RunData]], ref_label: str, metrics: list[Metric],
          n_boot: int, seed: int) -> list[dict[str, Any]]:
    table, tests = build_table9(groups, n_boot=n_boot, seed=seed)
    table = table.set_index("metric")
    raw_p: dict[tuple[str, str], float] = {}
    for _, t in tests.iterrows():
        first, _, second = str(t["pair"]).partition(" vs ")
        other = second if first == ref_label else first if second == ref_label else None
        if other is None:
            continue
        raw_p[(other, str(t["metric"]))] = float(t["p_value"])
    out = []
    for m in metrics:
        if m.name not in table.index:
            continue
        rec = table.loc[m.name]
        ref_mean = float(rec[ref_label])
        levels = [lv for lv in groups if lv != ref_label]
        adjusted = holm([raw_p.get((lv, m.name), np.nan) for lv in levels]) if levels else np.array([])
        p_of = dict(zip(levels, adjusted.tolist(), strict=True))
        for lv in groups:
            mean = float(rec[lv])
            lo, hi = _interval(rec, lv)
            out.append({"pipeline": display, "axis": axis, "level": lv, "metric": m.key,
                        "mean": mean, "ci_low": lo, "ci_high": hi,
                        "n_runs": int(rec[f"{lv}_runs"]), "delta": mean - ref_mean if lv != ref_label else 0.0,
                        "p_value": float(p_of.get(lv, np.nan)), "p_raw": raw_p.get((lv, m.name), np.nan),
                        "reference": lv == ref_label, "metric_name": m.name, "percent": m.percent})
    return out


def _interval(rec: pd.Series, level: str) -> tuple[float, float]:
    """The level's interval as Table 9 shows it: over seeds and patients (hierarchical bootstrap)
    with several runs, over patients with one."""
    lo, hi = rec.get(f"{level}_hier_ci_low", np.nan), rec.get(f"{level}_hier_ci_high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = rec[f"{level}_ci_low"], rec[f"{level}_ci_high"]
    return float(lo), float(hi)


def _interaction(cells, pipeline: str, ax1: dict, ax2: dict, metrics: list[Metric]) -> pd.DataFrame:
    """Mean of each metric in every (level1, level2) cell of a two-axis study (main-axis cells from
    the one-axis runs: the other axis is then at its reference)."""
    r1, r2 = ax1["reference"][pipeline], ax2["reference"][pipeline]
    grid: dict[tuple[str, str], list[RunData]] = {}
    for cell, run, p in cells:
        if p != pipeline:
            continue
        if "axis2" in cell and cell["axis"] == ax1["name"] and cell["axis2"] == ax2["name"]:
            key = (level_label(cell["level"]), level_label(cell["level2"]))
        elif cell.get("reference"):
            key = (level_label(r1), level_label(r2))
        elif cell["axis"] == ax1["name"]:
            key = (level_label(cell["level"]), level_label(r2))
        elif cell["axis"] == ax2["name"]:
            key = (level_label(r1), level_label(cell["level"]))
        else:
            continue
        runs = grid.setdefault(key, [])
        if all(r.path != run.path for r in runs):  # a reference run serves several main-axis cells
            runs.append(run)
    rows = [{"pipeline": label_of(pipeline), "axis1": ax1["name"], "level1": l1, "axis2": ax2["name"], "level2": l2,
             "metric": m.key, "mean": float(np.nanmean([r.metrics.get(m.key, np.nan) for r in runs])),
             "n_runs": len(runs)}
            for (l1, l2), runs in grid.items() for m in metrics]
    return pd.DataFrame(rows)


def compute_ablation(runs: Sequence[RunData], plan: dict[str, Any], n_boot: int = 1000, seed: int = 0) -> Ablation:
    """The ablation table of a ``levels`` study from its final runs and ``plan.json``."""
    metrics = list_metrics(table9=True)
    cells = _cells(plan, runs)
    rows: list[dict[str, Any]] = []
    refs: dict[tuple[str, str], str] = {}
    interactions = []
    for axis in plan.get("axes", []):
        if axis["name"] == PIPELINE_AXIS:
            ref_pipe = axis["reference"][axis["pipelines"][0]]
            groups = {label_of(p): [r for c, r, q in cells if q == p and c.get("axis") == "reference"]
                      for p in [ref_pipe, *[p for p in axis["pipelines"] if p != ref_pipe]]}
            groups = {k: v for k, v in groups.items() if v}
            if len(groups) > 1:
                rows += _rows(ALL, PIPELINE_AXIS, groups, label_of(ref_pipe), metrics, n_boot, seed)
                refs[(ALL, PIPELINE_AXIS)] = label_of(ref_pipe)
            continue
        for p in axis["pipelines"]:
            ref = axis["reference"][p]
            groups = _level_groups(cells, p, axis["name"], axis["levels"], ref)
            if level_label(ref) not in groups:
                logger.warning("ablation: no reference run for %s on pipeline %s", axis["name"], p)
                continue
            refs[(label_of(p), axis["name"])] = level_label(ref)
            rows += _rows(label_of(p), axis["name"], groups, level_label(ref), metrics, n_boot, seed)
    param_axes = [a for a in plan.get("axes", []) if a["name"] != PIPELINE_AXIS]
    for p in plan.get("pipelines", []):
        mine = [a for a in param_axes if p in a["pipelines"]]
        if len(mine) == 2:
            interactions.append(_interaction(cells, p, mine[0], mine[1], metrics))
    table = pd.DataFrame(rows, columns=[*COLUMNS, "p_raw", "reference", "metric_name", "percent"])
    return Ablation(table=table, interactions=[t for t in interactions if not t.empty], reference=refs)
