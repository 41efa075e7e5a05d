"""Ablation plots: metric against level per axis (interval band for a numeric axis, points with error
bars for a categorical one, the reference level marked) and a heatmap per two-axis interaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.ablation import HEADLINE
from harness.report.figures import color, styled, subplots

REF_COLOR = "#c53030"


def _numeric(levels: list[str]) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in levels])
    except ValueError:
        return None


@styled
def axis_figure(block: pd.DataFrame, metrics: tuple[str, ...] = HEADLINE) -> Figure:
    """One panel per headline metric: mean over seeds with its 95% interval at every level."""
    shown = [m for m in metrics if m in set(block["metric"])]
    fig, axes = subplots(max(len(shown), 1), w=3.6, h=2.9)
    pipeline, axis = str(block["pipeline"].iloc[0]), str(block["axis"].iloc[0])
    tint = color(pipeline) if pipeline != "all" else "#2d3748"
    for ax, metric in zip(axes[0], shown, strict=False):
        sub = block[block["metric"] == metric]
        levels = [str(v) for v in sub["level"]]
        x = _numeric(levels)
        order = np.argsort(x) if x is not None else np.arange(len(levels))
        mean, lo, hi = (sub[c].to_numpy(float)[order] for c in ("mean", "ci_low", "ci_high"))
        ref = sub["reference"].to_numpy(bool)[order]
        xs = x[order] if x is not None else np.arange(len(levels))
        if x is not None:
            ax.fill_between(xs, lo, hi, color=tint, alpha=0.18, lw=0, label="95% interval")
            ax.plot(xs, mean, "-o", color=tint, ms=4, label="mean over seeds")
        else:
            err = np.vstack([np.clip(mean - lo, 0, None), np.clip(hi - mean, 0, None)])
            ax.errorbar(xs, mean, yerr=np.nan_to_num(err), fmt="o", color=tint, capsize=3, label="mean, 95% interval")
            ax.set_xticks(xs, [levels[i] for i in order], rotation=20, ha="right")
        ax.scatter(xs[ref], mean[ref], marker="*", s=140, color=REF_COLOR, zorder=4, label="reference")
        ax.set_title(str(sub["metric_name"].iloc[0]))
        ax.set_xlabel(axis)
    axes[0, 0].legend(loc="best", fontsize=7)
    fig.suptitle(f"{axis} — {'all pipelines' if pipeline == 'all' else 'pipeline ' + pipeline}", fontsize=10,
                 fontweight="bold")
    fig.tight_layout()
    return fig


@styled
def interaction_figure(inter: pd.DataFrame, metrics: tuple[str, ...] = HEADLINE) -> Figure:
    """Heatmaps of the mean of each headline metric over the two axes' levels."""
    shown = [m for m in metrics if m in set(inter["metric"])]
    fig, axes = subplots(max(len(shown), 1), w=3.8, h=3.2)
    for ax, metric in zip(axes[0], shown, strict=False):
        sub = inter[inter["metric"] == metric]
        m = sub.pivot_table(index="level1", columns="level2", values="mean", aggfunc="first", sort=False)
        im = ax.imshow(m.to_numpy(float), cmap="viridis", aspect="auto")
        ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns], rotation=20, ha="right")
        ax.set_yticks(range(m.shape[0]), [str(i) for i in m.index])
        for (i, j), v in np.ndenumerate(m.to_numpy(float)):
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xlabel(str(sub["axis2"].iloc[0]))
        ax.set_ylabel(str(sub["axis1"].iloc[0]))
        ax.set_title(metric)
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Interaction, pipeline {inter['pipeline'].iloc[0]}", fontsize=10, fontweight="bold")
    fig.tight_layout()
    return fig
