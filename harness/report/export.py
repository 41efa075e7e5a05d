"""Table 9 as files: csv (all numbers), xlsx (formatted, one sheet per detail table), GitHub
markdown and LaTeX (booktabs), for any number of pipelines (one column group each, the pipelines
read from the table's ``<L>_runs`` columns). Pure formatting helpers + thin writers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.metrics import Metric, list_metrics
from harness.metrics.stats import MIN_SEEDS_FOR_T
from harness.report.table9 import PIPELINE_SUFFIXES, p_columns, pairs_of, pipelines_of, tests_pipelines

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


def value_and_ci(rec: pd.Series, p: str, percent: bool, with_ci: bool = True) -> tuple[str, str]:
    """(value text, CI text) of pipeline ``p`` in one Table 9 row: one run, the patient-bootstrap
    CI; several runs, mean ± std and the seed-and-patient bootstrap CI of the mean, plus the t CI
    ("t [...]") with at least three seeds."""
    value = fmt(rec[p], percent)
    if rec[f"{p}_runs"] > 1 and not _nan(rec[f"{p}_std"]):
        value += f" ± {fmt(rec[f'{p}_std'], percent)}"
    if not with_ci:
        return value, DASH
    low, high = rec[f"{p}_ci_low"], rec[f"{p}_ci_high"]
    if rec[f"{p}_runs"] > 1 and not _nan(rec.get(f"{p}_hier_ci_low")):
        low, high = rec[f"{p}_hier_ci_low"], rec[f"{p}_hier_ci_high"]
    ci = DASH if _nan(low) else f"[{fmt(low, percent)}, {fmt(high, percent)}]"
    if not _nan(low) and not _nan(rec[f"{p}_seed_ci_low"]):
        ci += f"; t [{fmt(rec[f'{p}_seed_ci_low'], percent)}, {fmt(rec[f'{p}_seed_ci_high'], percent)}]"
    return value, ci


def rows_by_name() -> dict[str, Metric]:
    """Table 9 metrics by display name (the table's ``metric`` column)."""
    return {m.name: m for m in list_metrics(table9=True)}


def paper_pipelines(table: pd.DataFrame) -> list[str]:
    """Pipelines with a paper column."""
    return [p for p in pipelines_of(table) if f"paper_{p}" in table.columns]


def shown_p_columns(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(pair text, column) of the p-values a rendered Table 9 shows: the raw p with one pair (the
    paper's A vs B), the Holm-adjusted p of every pair when there are several."""
    pairs = pairs_of(pipelines_of(table))
    return [(f"{a} vs {b}", p_columns((a, b), len(pairs))[0 if len(pairs) == 1 else 1]) for a, b in pairs]


def p_header(pair: str, n_shown: int) -> str:
    """Header of a shown p column: "p (A vs B)", or "p Holm (A vs C)" when several pairs are shown."""
    return f"p ({pair})" if n_shown == 1 else f"p Holm ({pair})"


def _procedures(table: pd.DataFrame, n_boot: int) -> str:
    """"<test> of <scope> (rows); ..." for the paired tests the rows of ``table`` name."""
    from harness.metrics.paired import get_paired_test

    rows = rows_by_name()
    by_strategy: dict[str, list[str]] = {}
    for name in table["metric"]:
        m = rows.get(name)
        if m is not None and m.test:
            by_strategy.setdefault(m.test, []).append(name)
    parts = []
    for key, names in by_strategy.items():
        s = get_paired_test(key)
        extra = f", {n_boot} permutations" if key == "permutation" else ""
        parts.append(f"{s.test}: {s.scope}{extra} ({', '.join(names)})")
    return "; ".join(parts)


def caption(table: pd.DataFrame, subset: str, n_images: dict[str, int], n_boot: int,
            n_patients: dict[str, int] | None = None, notes: tuple[str, ...] | list[str] = ()) -> str:
    """What the numbers are: the unit (patients, how many), how each interval and p-value was
    computed, the Macro F1 definition, and ``notes`` (e.g. runs without patient ids)."""
    labels = pipelines_of(table)
    n_patients = n_patients or {}
    parts, runs = [], {}
    for p in labels:
        runs[p] = int(table[f"{p}_runs"].iloc[0]) if len(table) else 0
        if runs[p]:
            parts.append(f"{p}: {runs[p]} run{'s' if runs[p] > 1 else ''}, {n_images.get(p, 0)} images of "
                         f"{n_patients.get(p, n_images.get(p, 0))} patients")
    text = [f"Table 9 recomputed on the {subset} subset ({'; '.join(parts) or 'no runs'}). The statistical unit is "
            f"the patient. 95% CI: percentile bootstrap over patients (all images of a patient resampled together, "
            f"within strata of equal image count; B = {n_boot})."]
    several = [p for p in labels if runs[p] > 1]
    if several:
        two = [p for p in several if runs[p] < MIN_SEEDS_FOR_T]
        why = (f" ({', '.join(two)}: 2 seeds, so no t interval; t(0.975, df=1) = 12.7 would make it span most "
               "of the metric's range)") if two else ""
        text.append(f"With several runs (seeds): mean ± std over runs, and the CI of that mean is a seed-and-patient "
                    f"bootstrap (runs resampled with replacement, then patients, shared by the runs; B = {n_boot}); "
                    f"'t' is the t-based 95% CI of the mean over seeds, given with {MIN_SEEDS_FOR_T} or more "
                    f"seeds{why}.")
    pairs = pairs_of(labels)
    if pairs:
        holm = (f", Holm-adjusted over the {len(pairs)} pairs in each row (shown)" if len(pairs) > 1 else "")
        text.append(f"p: paired test of each row's own metric on the patients both pipelines evaluated, runs paired "
                    f"by seed{holm}. {_procedures(table, n_boot)}.")
    if "Macro F1" in set(table["metric"]):
        text.append("Macro F1 is the unweighted mean of the per-class F1 (scikit-learn average='macro'); Appendix A's "
                    "harmonic form, 2PR/(P+R) of macro precision P and macro recall R, is macro_f1_harmonic in "
                    "metrics.json.")
    text += list(notes)
    return " ".join(text)


def table9_markdown(table: pd.DataFrame, cap: str = "") -> str:
    """GitHub markdown in the paper's layout, with section rows and CIs."""
    labels, papers, shown = pipelines_of(table), paper_pipelines(table), shown_p_columns(table)
    heads = ["Metric", *[h for p in labels for h in (f"Pipeline {p}", "95% CI")], *[f"Paper {p}" for p in papers],
             *[p_header(pair, len(shown)) for pair, _ in shown]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    section, rows = None, rows_by_name()
    for _, rec in table.iterrows():
        row = rows[rec["metric"]]
        if row.section != section:
            section = row.section
            lines.append(f"| *{section}* |" + " |" * (len(heads) - 1))
        cells = [c for p in labels for c in value_and_ci(rec, p, row.percent)]
        cells += [fmt(rec[f"paper_{p}"], row.percent) for p in papers] + [fmt_p(rec[c]) for _, c in shown]
        lines.append(f"| {row.name.replace('>=', '≥')} | " + " | ".join(cells) + " |")
    return (f"{cap}\n\n" if cap else "") + "\n".join(lines) + "\n"


def tests_markdown(tests: pd.DataFrame) -> str:
    """The paired tests: per pair and row, the test, its unit counts, both values, the difference
    with its paired patient-bootstrap CI, and the p-value (Holm-adjusted too with several pairs)."""
    if tests.empty:
        return "No paired test (two pipelines with runs are needed, on common images).\n"
    labels = tests_pipelines(tests)
    several = tests["pair"].nunique() > 1
    heads = (["Pair"] if several else []) + ["Metric", "Test", "Patients", "Images", "Informative", *labels,
                                             "Difference [95% CI]", "Statistic", "p"] + (["p Holm"] if several else [])
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for _, t in tests.iterrows():
        diff = f"{fmt(t['difference'])} [{fmt(t['diff_ci_low'])}, {fmt(t['diff_ci_high'])}]"
        cells = ([t["pair"]] if several else []) + [
            str(t["metric"]).replace(">=", "≥"), t["test"], str(t["n_patients"]), str(t["n_images"]),
            str(t["n_informative"]), *[fmt(t[p]) for p in labels], diff, fmt(t["statistic"], digits=3),
            fmt_p(t["p_value"])] + ([fmt_p(t["p_holm"])] if several else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; '>=' becomes $\\geq$ and '±' $\\pm$."""
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace(">=", r"$\geq$").replace("±", r"$\pm$").replace("–", "--")


def table9_latex(table: pd.DataFrame, cap: str = "") -> str:
    """A booktabs ``table`` ready to paste (needs \\usepackage{booktabs})."""
    labels, papers, shown = pipelines_of(table), paper_pipelines(table), shown_p_columns(table)
    n_cols = 1 + len(labels) + len(papers) + len(shown)
    p_heads = [r"$p$" if len(shown) == 1 else r"$p_{\mathrm{Holm}}$ (" + tex_escape(pair) + ")" for pair, _ in shown]
    heads = ["Metric", *[f"Pipeline {p}" for p in labels], *[f"Paper {p}" for p in papers]]
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\caption{" + tex_escape(cap or "Table 9 recomputed.") + "}", r"\label{tab:table9}",
             r"\begin{tabular}{l" + "c" * (n_cols - 1) + "}", r"\toprule",
             " & ".join([*map(tex_escape, heads), *p_heads]) + r" \\", r"\midrule"]
    section, rows = None, rows_by_name()
    for _, rec in table.iterrows():
        row = rows[rec["metric"]]
        if row.section != section:
            if section is not None:
                lines.append(r"\addlinespace")
            section = row.section
            lines.append(rf"\multicolumn{{{n_cols}}}{{l}}{{\textit{{" + tex_escape(section or "") + r"}} \\")
        cells = []
        for p in labels:
            v, ci = value_and_ci(rec, p, row.percent)
            cells.append(tex_escape(v) + ("" if ci == DASH else r" {\scriptsize " + tex_escape(ci) + "}"))
        cells += [tex_escape(fmt(rec[f"paper_{p}"], row.percent)) for p in papers]
        cells += [tex_escape(fmt_p(rec[c]).replace("< ", "<")) for _, c in shown]
        lines.append(" & ".join([tex_escape(row.name), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# xlsx


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a text cell starting with one of these as a formula (CSV injection)."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise(value):
    """A text that a spreadsheet would run as a formula (``=1+2``, ``@SUM(..)``, ``+cmd|..``) gets a leading
    ``'`` (shown as text, OWASP's advice for CSV exports); numbers and other values are returned as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell and column name passed through :func:`neutralise` (for CSV exports)."""
    out = df.rename(columns=lambda c: neutralise(str(c)) if isinstance(c, str) else c)
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    return out


def _xlsx_table9_columns(table: pd.DataFrame) -> list[str]:
    """Each paper column right after ours, then the uncertainty columns."""
    first = ["metric"] + [c for p in pipelines_of(table) for c in (p, f"paper_{p}") if c in table.columns]
    return first + [c for c in table.columns if c not in first]


def _text_cell(ws, row: int, column: int, text: str):
    """A cell holding ``text`` as a string, never as a formula (openpyxl makes "=..." a formula)."""
    c = ws.cell(row=row, column=column)
    c.value = text
    c.data_type = "s"
    return c


def sheet_title(text: str) -> str:
    """A valid worksheet title: at most 31 characters, none of ``[]:*?/\\``."""
    return ("".join("_" if ch in "[]:*?/\\" else ch for ch in str(text))[:31]).strip("'") or "Sheet"


def _write_sheet(ws, df: pd.DataFrame, formats: dict[str, str] | None = None, row_formats=None) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    formats = formats or {}
    header_fill = PatternFill("solid", fgColor="DDE4EE")
    for j, col in enumerate(df.columns, start=1):
        c = _text_cell(ws, 1, j, str(col))
        c.font = Font(bold=True)
        c.fill = header_fill
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for i, (_, rec) in enumerate(df.iterrows(), start=2):
        for j, col in enumerate(df.columns, start=1):
            v = rec[col]
            if hasattr(v, "item"):
                v = v.item()
            if v is not None and not isinstance(v, (int, float, str)):  # a list, dict, date...: shown as text
                v = str(v)
            c = _text_cell(ws, i, j, v) if isinstance(v, str) else ws.cell(i, j, value=None if _nan(v) else v)
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
    labels = pipelines_of(table)
    value_cols = {f"{p}{s}" for p in labels for s in PIPELINE_SUFFIXES if s != "_runs"} | {f"paper_{p}" for p in labels}
    rows = rows_by_name()

    def row_format(rec: pd.Series, col: str) -> str | None:
        if col.startswith(("p_value", "p_holm")):
            return "0.0000"
        if col.endswith("_runs"):
            return "0"
        if col in value_cols:
            return "0.0%" if rows[rec["metric"]].percent else "0.000"
        return None

    _write_sheet(ws, table[_xlsx_table9_columns(table)], row_formats=row_format)
    ws.column_dimensions["A"].width = 24
    for name, df in sheets.items():
        if df is None or df.empty:
            continue
        _write_sheet(wb.create_sheet(sheet_title(name)), df, _float_formats(df))
    wb.save(path)
    return path


# ------------------------------------------------------------------------------------------------


def write_table9(out_dir: Path, table: pd.DataFrame, tests: pd.DataFrame, sheets: dict[str, pd.DataFrame],
                 cap: str = "") -> list[Path]:
    """table9.csv / .xlsx / .md / .tex in ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / "table9.csv"
    spreadsheet_safe(table).to_csv(csv, index=False)
    md = out_dir / "table9.md"
    title = " vs ".join(pipelines_of(table)) if len(pipelines_of(table)) == 2 else "pairwise, Holm over pairs"
    md.write_text(table9_markdown(table, cap) + f"\n**Paired tests ({title})**\n\n" + tests_markdown(tests))
    tex = out_dir / "table9.tex"
    tex.write_text(table9_latex(table, cap))
    xlsx = write_xlsx(out_dir / "table9.xlsx", table, {"Paired tests": tests, **sheets})
    return [csv, xlsx, md, tex]


__all__ = ["write_table9", "neutralise", "spreadsheet_safe", "sheet_title", "table9_markdown", "table9_latex",
           "tests_markdown", "write_xlsx", "fmt", "fmt_p",
           "tex_escape", "caption", "value_and_ci", "rows_by_name", "shown_p_columns", "paper_pipelines", "p_header"]
