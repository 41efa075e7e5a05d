"""Table 9 as files: csv (all numbers), xlsx (formatted, one sheet per detail table), GitHub
markdown and LaTeX (booktabs). Pure formatting helpers + thin writers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.report.table9 import ROW_BY_NAME, TABLE9_ROWS

DASH = "–"


# ------------------------------------------------------------------------------------------------
# Formatting (pure)


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v, percent: bool = False, digits: int = 3) -> str:
    """0.84391 -> '0.844'; percent rows 0.837 -> '83.7%'; NaN -> '–'."""
    if _nan(v):
        return DASH
    return f"{100 * v:.1f}%" if percent else f"{v:.{digits}f}"


def fmt_p(p) -> str:
    if _nan(p):
        return DASH
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _cell(rec: pd.Series, p: str, percent: bool, with_ci: bool = True) -> tuple[str, str]:
    """(value text, CI text) of pipeline ``p`` in one Table 9 row."""
    value = fmt(rec[p], percent)
    if rec[f"{p}_runs"] > 1 and not _nan(rec[f"{p}_std"]):
        value += f" ± {fmt(rec[f'{p}_std'], percent)}"
    ci = DASH
    if with_ci and not _nan(rec[f"{p}_ci_low"]):
        ci = f"[{fmt(rec[f'{p}_ci_low'], percent)}, {fmt(rec[f'{p}_ci_high'], percent)}]"
        if not _nan(rec[f"{p}_seed_ci_low"]):
            ci += f"; seeds [{fmt(rec[f'{p}_seed_ci_low'], percent)}, {fmt(rec[f'{p}_seed_ci_high'], percent)}]"
    return value, ci


def caption(table: pd.DataFrame, subset: str, n_images: dict[str, int], n_boot: int) -> str:
    """One sentence saying what the numbers are."""
    parts = []
    for p in ("A", "B"):
        runs = int(table[f"{p}_runs"].iloc[0])
        if runs:
            parts.append(f"{p}: {runs} run{'s' if runs > 1 else ''}, {n_images.get(p, 0)} images")
    spread = (" Values with ± are mean ± std over runs (seeds); 'seeds' is the t-based 95% CI of that mean."
              if (table[["A_runs", "B_runs"]] > 1).any().any() else "")
    return (f"Table 9 recomputed on the {subset} subset ({'; '.join(parts) or 'no runs'}). "
            f"95% CI: percentile bootstrap over images (B = {n_boot}).{spread} "
            f"p: paired A-vs-B test on the same images (McNemar / Wilcoxon).")


def table9_markdown(table: pd.DataFrame, cap: str = "") -> str:
    """GitHub markdown in the paper's layout, with section rows and CIs."""
    head = "| Metric | Pipeline A | 95% CI | Pipeline B | 95% CI | Paper A | Paper B | p (A vs B) |"
    lines = [head, "|" + "---|" * 8]
    section = None
    for _, rec in table.iterrows():
        row = ROW_BY_NAME[rec["metric"]]
        if row.section != section:
            section = row.section
            lines.append(f"| *{section}* | | | | | | | |")
        a, a_ci = _cell(rec, "A", row.percent)
        b, b_ci = _cell(rec, "B", row.percent)
        lines.append(f"| {row.name.replace('>=', '≥')} | {a} | {a_ci} | {b} | {b_ci} | "
                     f"{fmt(rec['paper_A'], row.percent)} | {fmt(rec['paper_B'], row.percent)} | {fmt_p(rec['p_value'])} |")
    return (f"{cap}\n\n" if cap else "") + "\n".join(lines) + "\n"


def tests_markdown(tests: pd.DataFrame) -> str:
    if tests.empty:
        return "No paired A-vs-B test (both pipelines are needed, on common images).\n"
    lines = ["| Test | Scope | Images | Discordant / non-zero | A | B | Statistic | p |", "|" + "---|" * 8]
    for _, t in tests.iterrows():
        lines.append(f"| {t['test']} | {t['scope']} | {t['n_images']} | {t['n_informative']} | {fmt(t['A'])} | "
                     f"{fmt(t['B'])} | {fmt(t['statistic'], digits=1)} | {fmt_p(t['p_value'])} |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; '>=' becomes $\\geq$ and '±' $\\pm$."""
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace(">=", r"$\geq$").replace("±", r"$\pm$").replace("–", "--")


def table9_latex(table: pd.DataFrame, cap: str = "") -> str:
    """A booktabs ``table`` ready to paste (needs \\usepackage{booktabs})."""
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\caption{" + tex_escape(cap or "Table 9 recomputed.") + "}", r"\label{tab:table9}",
             r"\begin{tabular}{lccccc}", r"\toprule",
             r"Metric & Pipeline A & Pipeline B & Paper A & Paper B & $p$ \\", r"\midrule"]
    section = None
    for _, rec in table.iterrows():
        row = ROW_BY_NAME[rec["metric"]]
        if row.section != section:
            if section is not None:
                lines.append(r"\addlinespace")
            section = row.section
            lines.append(r"\multicolumn{6}{l}{\textit{" + tex_escape(section) + r"}} \\")
        cells = []
        for p in ("A", "B"):
            v, ci = _cell(rec, p, row.percent)
            cells.append(tex_escape(v) + ("" if ci == DASH else r" {\scriptsize " + tex_escape(ci) + "}"))
        lines.append(" & ".join([tex_escape(row.name), *cells, tex_escape(fmt(rec["paper_A"], row.percent)),
                                 tex_escape(fmt(rec["paper_B"], row.percent)),
                                 tex_escape(fmt_p(rec["p_value"]).replace("< ", "<"))]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# xlsx


def _xlsx_table9_columns(table: pd.DataFrame) -> list[str]:
    """Each paper column right after ours, then the uncertainty columns."""
    first = ["metric", "A", "paper_A", "B", "paper_B"]
    return first + [c for c in table.columns if c not in first]


def _write_sheet(ws, df: pd.DataFrame, formats: dict[str, str] | None = None, row_formats=None) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    formats = formats or {}
    header_fill = PatternFill("solid", fgColor="DDE4EE")
    for j, col in enumerate(df.columns, start=1):
        c = ws.cell(row=1, column=j, value=str(col))
        c.font = Font(bold=True)
        c.fill = header_fill
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for i, (_, rec) in enumerate(df.iterrows(), start=2):
        for j, col in enumerate(df.columns, start=1):
            v = rec[col]
            if hasattr(v, "item"):
                v = v.item()
            c = ws.cell(row=i, column=j, value=None if _nan(v) else v)
            fmt_code = (row_formats(rec, col) if row_formats else None) or formats.get(col)
            if fmt_code and isinstance(v, (int, float)) and not isinstance(v, bool):
                c.number_format = fmt_code
    for j, col in enumerate(df.columns, start=1):
        width = max([len(str(col))] + [len(str(v)) if isinstance(v, str) else 8 for v in df[col].tolist()])
        ws.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 9), 60)
    ws.freeze_panes = "B2"


def _float_formats(df: pd.DataFrame, code: str = "0.000") -> dict[str, str]:
    return {c: code for c in df.columns if pd.api.types.is_float_dtype(df[c])}


def write_xlsx(path: Path, table: pd.DataFrame, sheets: dict[str, pd.DataFrame]) -> Path:
    """Table 9 (percent rows as 0.0%, others 0.000, p as 0.0000) and one sheet per detail table."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Table 9"
    value_cols = {c for c in table.columns if c[:1] in "AB" and not c.endswith("_runs") or c.startswith("paper_")}

    def row_format(rec: pd.Series, col: str) -> str | None:
        if col == "p_value":
            return "0.0000"
        if col.endswith("_runs"):
            return "0"
        if col in value_cols:
            return "0.0%" if ROW_BY_NAME[rec["metric"]].percent else "0.000"
        return None

    _write_sheet(ws, table[_xlsx_table9_columns(table)], row_formats=row_format)
    ws.column_dimensions["A"].width = 24
    for name, df in sheets.items():
        if df is None or df.empty:
            continue
        _write_sheet(wb.create_sheet(name[:31]), df, _float_formats(df))
    wb.save(path)
    return path


# ------------------------------------------------------------------------------------------------


def write_table9(out_dir: Path, table: pd.DataFrame, tests: pd.DataFrame, sheets: dict[str, pd.DataFrame],
                 cap: str = "") -> list[Path]:
    """table9.csv / .xlsx / .md / .tex in ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "table9.csv"
    table.to_csv(csv, index=False)
    md = out_dir / "table9.md"
    md.write_text(table9_markdown(table, cap) + "\n**Paired tests (A vs B)**\n\n" + tests_markdown(tests))
    tex = out_dir / "table9.tex"
    tex.write_text(table9_latex(table, cap))
    xlsx = write_xlsx(out_dir / "table9.xlsx", table, {"Paired tests": tests, **sheets})
    return [csv, xlsx, md, tex]


__all__ = ["write_table9", "table9_markdown", "table9_latex", "tests_markdown", "write_xlsx", "fmt", "fmt_p",
           "tex_escape", "caption", "TABLE9_ROWS"]
