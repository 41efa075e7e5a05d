"""The ablation table as files: ``ablation.csv`` (long: one row per pipeline, axis, level and metric),
``ablation.xlsx``, ``ablation.md`` and ``ablation.tex`` (booktabs, one table per axis, levels as rows
and Table 9's metrics as columns, the reference level marked), plus the wide per-axis frames the
html page shows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.metrics.registry import list_metrics
from harness.report.ablation import COLUMNS, Ablation
from harness.report.export import _write_sheet, fmt, fmt_p, sheet_title, spreadsheet_safe, tex_escape

REF_MARK = " (ref.)"


def axis_blocks(ab: Ablation) -> list[tuple[str, str, pd.DataFrame]]:
    """(pipeline, axis, rows of that axis) in table order."""
    t = ab.table
    keys = list(dict.fromkeys(zip(t["pipeline"], t["axis"], strict=True)))
    return [(p, a, t[(t["pipeline"] == p) & (t["axis"] == a)]) for p, a in keys]


def _metric_order(block: pd.DataFrame) -> list[str]:
    order = [m.key for m in list_metrics(table9=True)]
    return [k for k in order if k in set(block["metric"])]


def cell_text(row: pd.Series, with_delta: bool = True) -> tuple[str, str]:
    """("0.726 [0.628, 0.815]", "Δ −0.050, p 0.030") for one level and metric."""
    pct = bool(row.get("percent", False))
    value = f"{fmt(row['mean'], pct)} [{fmt(row['ci_low'], pct)}, {fmt(row['ci_high'], pct)}]"
    if row["reference"] or not with_delta:
        return value, "reference" if row["reference"] else ""
    delta = f"{100 * row['delta']:+.1f} pp" if pct else f"{row['delta']:+.3f}"
    return value, f"Δ {delta}, p {fmt_p(row['p_value'])}"


def wide(block: pd.DataFrame) -> pd.DataFrame:
    """Levels as rows, metrics as columns, each cell "mean [CI] / Δ, p"; plus the run count."""
    metrics = _metric_order(block)
    names = dict(zip(block["metric"], block["metric_name"], strict=False))
    rows = []
    for level in dict.fromkeys(block["level"]):
        sub = block[block["level"] == level].set_index("metric")
        ref = bool(sub["reference"].iloc[0])
        rec = {"level": str(level) + (REF_MARK if ref else ""), "runs": int(sub["n_runs"].iloc[0])}
        for m in metrics:
            value, delta = cell_text(sub.loc[m])
            rec[names[m]] = value if ref else f"{value} / {delta}"
        rows.append(rec)
    return pd.DataFrame(rows)


def caption(pipeline: str, axis: str, block: pd.DataFrame) -> str:
    seeds = int(block["n_runs"].max()) if not block.empty else 0
    who = "all pipelines" if pipeline == "all" else f"pipeline {pipeline}"
    interval = ("seed-and-patient bootstrap (seeds resampled, then patients)" if seeds > 1
                else "patient bootstrap")
    return (f"Ablation of {axis} ({who}), test subset, {seeds} seed(s) per level: mean over seeds with its 95% "
            f"interval ({interval}, as Table 9); Δ = level − reference with the paired patient-level test of "
            "each metric (as Table 9's rows), Holm-corrected across this axis's levels.")


def ablation_markdown(ab: Ablation) -> str:
    parts = []
    for p, a, block in axis_blocks(ab):
        w = wide(block)
        head = "| " + " | ".join(w.columns) + " |\n|" + "---|" * len(w.columns) + "\n"
        body = "".join("| " + " | ".join(str(v).replace(" / ", "<br>") for v in rec) + " |\n"
                       for rec in w.itertuples(index=False))
        parts.append(f"### {a} — {'all pipelines' if p == 'all' else 'pipeline ' + p}\n\n{caption(p, a, block)}\n\n"
                     + head + body)
    for inter in ab.interactions:
        parts.append(interaction_markdown(inter))
    return "\n".join(parts) if parts else "No ablation runs.\n"


def interaction_frames(inter: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, level1 x level2 matrix of means) per metric of an interaction table."""
    out = []
    for metric, sub in inter.groupby("metric", sort=False):
        m = sub.pivot_table(index="level1", columns="level2", values="mean", aggfunc="first", sort=False)
        out.append((f"{sub['pipeline'].iloc[0]}: {metric} by {sub['axis1'].iloc[0]} x {sub['axis2'].iloc[0]}", m))
    return out


def interaction_markdown(inter: pd.DataFrame) -> str:
    text = []
    for title, m in interaction_frames(inter):
        head = f"| {m.index.name} \\ {m.columns.name} | " + " | ".join(map(str, m.columns)) + " |\n"
        head += "|" + "---|" * (len(m.columns) + 1) + "\n"
        body = "".join(f"| {i} | " + " | ".join(fmt(v) for v in row) + " |\n" for i, row in m.iterrows())
        text.append(f"#### Interaction — {title}\n\nMean over seeds of every cell (the main-axis cells are the "
                    f"one-axis runs).\n\n{head}{body}")
    return "\n".join(text)


def ablation_latex(ab: Ablation) -> str:
    """One booktabs ``table`` per axis: levels as rows (a second row with Δ and p), metrics as columns."""
    out = ["% Ablation tables (harness); needs \\usepackage{booktabs}"]
    for p, a, block in axis_blocks(ab):
        metrics = _metric_order(block)
        names = dict(zip(block["metric"], block["metric_name"], strict=False))
        cols = "l" + "c" * len(metrics)
        lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize",
                 rf"\caption{{{tex_escape(caption(p, a, block))}}}", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
                 " & ".join([tex_escape(a)] + [tex_escape(names[m]) for m in metrics]) + r" \\", r"\midrule"]
        for level in dict.fromkeys(block["level"]):
            sub = block[block["level"] == level].set_index("metric")
            ref = bool(sub["reference"].iloc[0])
            cells = [cell_text(sub.loc[m]) for m in metrics]
            label = tex_escape(str(level)) + (r" \textit{(ref.)}" if ref else "")
            lines.append(" & ".join([label] + [tex_escape(v) for v, _ in cells]) + r" \\")
            if not ref:
                lines.append(" & ".join([""] + [r"{\tiny " + tex_escape(d) + "}" for _, d in cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def write_ablation(out_dir: Path, ab: Ablation) -> list[Path]:
    """``ablation.{csv,xlsx,md,tex}`` in ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"ablation.{ext}" for ext in ("csv", "xlsx", "md", "tex")]
    spreadsheet_safe(ab.table[COLUMNS]).to_csv(paths[0], index=False)
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Ablation"
    _write_sheet(ws, ab.table[[*COLUMNS, "p_raw", "reference"]].astype({"level": str}))
    for k, (p, a, block) in enumerate(axis_blocks(ab)):
        _write_sheet(wb.create_sheet(sheet_title(f"{k + 1} {p} {a}")), wide(block))
    for k, inter in enumerate(ab.interactions):
        _write_sheet(wb.create_sheet(f"Interaction {k + 1}"), inter)
    wb.save(paths[1])
    paths[2].write_text("# Ablations\n\n" + ablation_markdown(ab))
    paths[3].write_text(ablation_latex(ab))
    return paths
