"""Report figures (matplotlib, Agg): each ``*_figure`` function takes data and returns a Figure;
:func:`save` writes it. No file is read here (overlays read images in :mod:`.overlays`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness import CLASS_NAMES  # noqa: E402
from harness.metrics import PROB_COLUMNS  # noqa: E402
from harness.metrics.classification import average_precision, confusion_matrix, pr_curve, roc_auc, roc_curve  # noqa: E402
from harness.metrics.end_to_end import ATTRIBUTIONS, is_lesion  # noqa: E402
from harness.pipelines.registry import spec_by_label  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FALLBACK_COLORS = ("#805ad5", "#d53f8c", "#319795", "#975a16")
CLASS_COLORS = ("#38a169", "#e53e3e", "#718096")  # benign, malignant, normal
ATTR_COLORS = {"none": "#38a169", "classification": "#d69e2e", "segmentation": "#3182ce", "both": "#e53e3e"}
STYLE: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "legend.frameon": False, "figure.dpi": 110,
    # every text on a report figure is literal: run names, image ids and study names come from data, and
    # "$...$" in one would otherwise be parsed as math text (and an unbalanced one kills the report)
    "text.parse_math": False,
}


def color(label: str) -> str:
    """A pipeline's colour (its registry spec), stable for unregistered labels too."""
    spec = spec_by_label(label)
    return spec.color if spec else FALLBACK_COLORS[sum(map(ord, label)) % len(FALLBACK_COLORS)]


def pipeline_labels(table9: pd.DataFrame) -> list[str]:
    """The pipelines of a Table 9 frame, in its column order (each has a ``<L>_runs`` column)."""
    return [c[: -len("_runs")] for c in table9.columns if c.endswith("_runs")]


def styled(func):
    """Run a figure function inside the report's rc style (no global matplotlib state changes)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def subplots(ncols: int = 1, nrows: int = 1, w: float = 4.2, h: float = 3.4, **kw) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, **kw)
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@styled
def confusion_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """Confusion matrix per pipeline: counts and row percentages (paper Fig. 7)."""
    fig, axes = subplots(len(tables), w=3.8, h=3.4)
    for ax, (p, df) in zip(axes[0], tables.items(), strict=True):
        cm = confusion_matrix(df["label"].to_numpy(int), df["pred_label"].to_numpy(int))
        rows = cm.sum(axis=1, keepdims=True)
        frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        ax.grid(False)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%", ha="center", va="center",
                        color="white" if frac[i, j] > 0.6 else "#1a202c", fontsize=9)
        ax.set_xticks(range(3), CLASS_NAMES)
        ax.set_yticks(range(3), CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"Pipeline {p}")
    fig.tight_layout()
    return fig


@styled
def _curves_figure(tables: dict[str, pd.DataFrame], kind: str) -> Figure:
    fig, axes = subplots(len(tables), w=3.8, h=3.5)
    for ax, (p, df) in zip(axes[0], tables.items(), strict=True):
        y = df["label"].to_numpy(int)
        if not all(c in df.columns for c in PROB_COLUMNS):
            ax.text(0.5, 0.5, "no probabilities", ha="center", transform=ax.transAxes)
            continue
        for c, (name, col, color) in enumerate(zip(CLASS_NAMES, PROB_COLUMNS, CLASS_COLORS, strict=True)):
            yc, s = y == c, df[col].to_numpy(float)
            if yc.all() or not yc.any():
                continue
            if kind == "roc":
                fpr, tpr = roc_curve(yc, s)
                auc = roc_auc(yc, s)
                ax.plot(fpr, tpr, color=color, lw=1.8, label=f"{name} (AUC {auc:.3f})")
            else:
                rec, prec = pr_curve(yc, s)
                ap = average_precision(yc, s)
                ax.step(rec, prec, where="post", color=color, lw=1.8, label=f"{name} (AP {ap:.3f})")
                ax.axhline(yc.mean(), color=color, lw=0.8, ls=":")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="#a0aec0", lw=1, ls="--")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"Pipeline {p}")
        ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def roc_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """One-vs-rest ROC curves per class (paper Fig. 12)."""
    return _curves_figure(tables, "roc")


@styled
def pr_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """One-vs-rest precision-recall curves per class; dotted lines are class prevalences (Fig. 13)."""
    return _curves_figure(tables, "pr")


def _lesion_dice(df: pd.DataFrame) -> np.ndarray:
    d = df["dice"].to_numpy(float)[is_lesion(df["label"].to_numpy())]
    return d[~np.isnan(d)]


@styled
def dice_histogram_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """End-to-end Dice of lesion images per pipeline, with the 0.7/0.8/0.9 thresholds."""
    fig, axes = subplots(1, w=7.0, h=3.2)
    ax = axes[0, 0]
    bins = np.linspace(0, 1, 26)
    for p, df in tables.items():
        d = _lesion_dice(df)
        ax.hist(d, bins=bins, alpha=0.55, color=color(p), label=f"Pipeline {p} (n={d.size}, median {np.median(d):.3f})"
                if d.size else f"Pipeline {p}", edgecolor="white", lw=0.5)
    for t in (0.7, 0.8, 0.9):
        ax.axvline(t, color="#4a5568", lw=0.8, ls="--")
    ax.set_xlabel("Dice (lesion images; a missed lesion is 0)")
    ax.set_ylabel("images")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


@styled
def dice_by_size_figure(by_size: pd.DataFrame) -> Figure:
    """Mean Dice by ground-truth lesion-size quartile, pipelines side by side."""
    fig, axes = subplots(1, w=6.0, h=3.2)
    ax = axes[0, 0]
    pipes = list(dict.fromkeys(by_size["pipeline"])) if not by_size.empty else []
    width = 0.8 / max(len(pipes), 1)
    for k, p in enumerate(pipes):
        sub = by_size[by_size["pipeline"] == p]
        x = np.arange(len(sub)) + (k - (len(pipes) - 1) / 2) * width
        bars = ax.bar(x, sub["dice_mean"], width, color=color(p), label=f"Pipeline {p}")
        for b, n in zip(bars, sub["n"], strict=True):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.01, f"n={n}", ha="center", fontsize=7)
    if pipes:
        first = by_size[by_size["pipeline"] == pipes[0]]
        ticks = zip(first["quartile"], first["min_pixels"], first["max_pixels"], strict=True)
        ax.set_xticks(range(len(first)), [f"{q}\n{lo:.0f}-{hi:.0f} px" for q, lo, hi in ticks])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("mean Dice")
    ax.set_xlabel(f"lesion-size quartile (ground-truth area{', pipeline ' + pipes[0] if len(pipes) > 1 else ''})")
    ax.legend(ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


@styled
def comparison_figure(table9: pd.DataFrame) -> Figure:
    """Table 9 as bars (ours, with the 95% CI the table shows: over patients, with several runs over
    seeds and patients) and the paper's values as diamonds (Fig. 9)."""
    fig, axes = subplots(1, w=9.0, h=3.6)
    ax = axes[0, 0]
    x = np.arange(len(table9))
    labels = pipeline_labels(table9)
    width = 0.76 / max(len(labels), 1)
    paper_shown = False
    for k, p in enumerate(labels):
        v = table9[p].to_numpy(float)
        lo, hi = table9[f"{p}_ci_low"].to_numpy(float), table9[f"{p}_ci_high"].to_numpy(float)
        if f"{p}_hier_ci_low" in table9.columns and (table9[f"{p}_runs"] > 1).all():  # as the table shows it
            lo, hi = table9[f"{p}_hier_ci_low"].to_numpy(float), table9[f"{p}_hier_ci_high"].to_numpy(float)
        off = (k - (len(labels) - 1) / 2) * width
        err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
        ax.bar(x + off, np.nan_to_num(v), width * 0.95, color=color(p), alpha=0.85, label=f"Pipeline {p}",
               yerr=np.nan_to_num(err), error_kw={"lw": 0.8, "capsize": 2, "ecolor": "#2d3748"})
        if f"paper_{p}" in table9.columns:
            ax.scatter(x + off, table9[f"paper_{p}"], marker="D", s=16, color="#1a202c", zorder=3,
                       label=None if paper_shown else "paper")
            paper_shown = True
    ax.set_xticks(x, [str(n).replace("Malignant ", "Malig. ").replace(">=", "≥") for n in table9["metric"]],
                  rotation=25, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value")
    if labels:
        ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig


@styled
def error_propagation_figure(prop: pd.DataFrame) -> Figure:
    """Lesion images by which stage failed, as stacked fractions per pipeline (Fig. 10/27)."""
    fig, axes = subplots(1, w=6.0, h=0.9 + 0.55 * max(prop["pipeline"].nunique(), 1) if not prop.empty else 2)
    ax = axes[0, 0]
    ax.grid(False)
    pipes = list(dict.fromkeys(prop["pipeline"])) if not prop.empty else []
    for i, p in enumerate(pipes):
        sub = prop[prop["pipeline"] == p].set_index("attribution")
        left = 0.0
        for a in ATTRIBUTIONS:
            f = float(sub.loc[a, "fraction"]) if a in sub.index else 0.0
            ax.barh(i, f, left=left, color=ATTR_COLORS[a], label=a if i == 0 else None, edgecolor="white")
            if f >= 0.06:
                ax.text(left + f / 2, i, f"{100 * f:.0f}%", ha="center", va="center", color="white", fontsize=8)
            left += f
    ax.set_yticks(range(len(pipes)), [f"Pipeline {p}" for p in pipes])
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of lesion images (stage that failed)")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


@styled
def confidence_figure(tables: dict[str, pd.DataFrame]) -> Figure:
    """Top-class probability of correct vs incorrect predictions (paper Fig. 18)."""
    fig, axes = subplots(len(tables), w=3.8, h=3.0)
    bins = np.linspace(1 / 3, 1, 21)
    for ax, (p, df) in zip(axes[0], tables.items(), strict=True):
        if not all(c in df.columns for c in PROB_COLUMNS):
            continue
        conf = df[list(PROB_COLUMNS)].to_numpy(float).max(axis=1)
        ok = (df["pred_label"] == df["label"]).to_numpy()
        ax.hist(conf[ok], bins=bins, alpha=0.6, color="#38a169", label=f"correct ({ok.sum()})")
        ax.hist(conf[~ok], bins=bins, alpha=0.7, color="#e53e3e", label=f"wrong ({(~ok).sum()})")
        ax.set_xlabel("top-class probability")
        ax.set_title(f"Pipeline {p}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


@styled
def training_figure(stages: dict[str, list[dict]], title: str) -> Figure:
    """Loss (top) and validation metric (bottom) per epoch for each stage; one line per run."""
    names = list(stages)
    fig, axes = subplots(max(len(names), 1), 2, w=3.9, h=2.5, sharex="col")
    for j, name in enumerate(names):
        top, bottom = axes[0, j], axes[1, j]
        metric_name = "val metric"
        for k, st in enumerate(stages[name]):
            h = pd.DataFrame(st.get("history") or [])
            if h.empty or "epoch" not in h:
                continue
            metric_name = st.get("metric_name", metric_name)
            alpha = 1.0 if k == 0 else 0.45
            tag = f" ({st['_run']})" if len(stages[name]) > 1 else ""
            if "train_loss" in h:
                top.plot(h["epoch"], h["train_loss"], color="#2b6cb0", alpha=alpha, lw=1.4,
                         label=f"train{tag}" if k < 2 else None)
            if "val_loss" in h:
                top.plot(h["epoch"], h["val_loss"], color="#dd6b20", alpha=alpha, lw=1.4,
                         label=f"val{tag}" if k < 2 else None)
            if "val_metric" in h:
                bottom.plot(h["epoch"], h["val_metric"], color="#2f855a", alpha=alpha, lw=1.4)
            if st.get("best_epoch"):
                bottom.axvline(st["best_epoch"], color="#a0aec0", lw=0.8, ls="--")
        top.set_title(name)
        top.set_ylabel("loss")
        top.legend(fontsize=7)
        bottom.set_ylabel(f"val {metric_name}".replace("val val", "val"))
        bottom.set_xlabel("epoch")
    fig.suptitle(title, fontweight="bold", fontsize=10)
    fig.tight_layout()
    return fig
