"""The report page as a string: one self-contained HTML file (inline CSS, no JS, no CDN) whose
figures are PNG files referenced relatively (``figures/*.png``). Pure rendering, no I/O."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd

from harness.report.export import fmt, fmt_p, p_header, paper_pipelines, rows_by_name, shown_p_columns, value_and_ci
from harness.report.table9 import pipelines_of

CSS = """
:root { --ink:#1a202c; --muted:#5a6778; --line:#e2e8f0; --bg:#f7f9fc; --a:#2b6cb0; --b:#dd6b20; }
* { box-sizing: border-box; }
body { margin:0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:var(--bg); line-height:1.45; font-size:15px; }
header { background:#1f2a44; color:#fff; padding:28px 40px 22px; }
header h1 { margin:0 0 6px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header p { margin:2px 0; color:#cbd5e0; font-size:13.5px; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:10px 40px; position:sticky; top:0; z-index:2; }
nav a { color:var(--muted); text-decoration:none; margin-right:18px; font-size:13.5px; white-space:nowrap; }
nav a:hover { color:var(--a); }
main { max-width:1240px; margin:0 auto; padding:10px 28px 60px; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 26px 22px; margin:22px 0; }
h2 { font-size:20px; margin:4px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:15.5px; margin:20px 0 8px; color:#2d3748; }
p.note, .caption { color:var(--muted); font-size:13px; }
figure { margin:14px 0 18px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; background:#fff; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; max-width:900px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:8px 22px; }
table { border-collapse:collapse; font-size:13.5px; margin:8px 0 6px; font-variant-numeric: tabular-nums; }
th, td { padding:5px 11px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { background:#edf2f7; font-weight:600; text-align:center; position:sticky; top:0; }
td:first-child, th:first-child, td.text { text-align:left; }
tr.sec td { background:#f7fafc; font-style:italic; color:var(--muted); text-align:left; }
td.ci { color:var(--muted); font-size:12px; }
td.paper { color:#4a5568; background:#fbfbfd; }
td.best { font-weight:700; }
.scroll { overflow-x:auto; max-width:100%; }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; color:#fff; }
.pill.a { background:var(--a); } .pill.b { background:var(--b); }
ul.files { columns:2; font-size:13.5px; }
code { background:#edf2f7; padding:1px 5px; border-radius:4px; font-size:12.5px; }
"""


@dataclass
class Section:
    """One titled part of the page; ``blocks`` are HTML snippets in order."""

    id: str
    title: str
    blocks: list[str] = field(default_factory=list)


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def paragraph(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{esc(text)}</p>'


def figure(src: str, caption: str, alt: str | None = None) -> str:
    """An ``<img>`` with its caption; ``src`` is relative to the page."""
    return (f'<figure><img src="{esc(src)}" alt="{esc(alt or caption)}" loading="lazy">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _cell(v, fmt_code: str | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if fmt_code == "%":
            return fmt(v, percent=True)
        if fmt_code == "p":
            return fmt_p(v)
        if fmt_code == "g":
            return f"{v:.4g}"
        return fmt(v, digits=int(fmt_code)) if fmt_code and fmt_code.isdigit() else fmt(v)
    return esc(v)


def table(df: pd.DataFrame, formats: dict[str, str] | None = None, caption: str = "") -> str:
    """A plain table; ``formats`` per column: "%" (percent), "p" (p-value), "g" (4 significant
    digits) or a number of decimals ("3")."""
    formats = formats or {}
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    opening = {c: '<td class="text">' if c in text_cols else "<td>" for c in df.columns}
    body = "".join(
        "<tr>" + "".join(f"{opening[c]}{_cell(rec[c], formats.get(c))}</td>" for c in df.columns) + "</tr>"
        for _, rec in df.iterrows()
    )
    cap = f'<p class="caption">{esc(caption)}</p>' if caption else ""
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{cap}'


def best_pipelines(values: dict[str, float], direction: str) -> set[str]:
    """The pipelines with the best value of a row in the metric's ``direction``; none when fewer
    than two have a value or all are equal (nothing to single out)."""
    known = {p: v for p, v in values.items() if not pd.isna(v)}
    if len(known) < 2 or len(set(known.values())) == 1:
        return set()
    best = max(known.values()) if direction == "max" else min(known.values())
    return {p for p, v in known.items() if v == best}


def _value_cells(rec: pd.Series, p: str, percent: bool, best: bool) -> str:
    value, ci = value_and_ci(rec, p, percent)
    cls = ' class="best"' if best else ""
    return f"<td{cls}>{esc(value)}</td><td class=\"ci\">{'<br>'.join(esc(part) for part in ci.split('; '))}</td>"


def table9_html(t9: pd.DataFrame) -> str:
    """Table 9 in the paper's layout, one column group per pipeline; the best pipeline of each row
    (in the metric's direction) in bold."""
    labels, papers, shown = pipelines_of(t9), paper_pipelines(t9), shown_p_columns(t9)
    heads = (["Metric"] + [h for p in labels for h in (f"Pipeline {p}", "95% CI")] + [f"Paper {p}" for p in papers]
             + [p_header(pair, len(shown)) for pair, _ in shown])
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr>"
    rows, section, by_name = [], None, rows_by_name()
    for _, rec in t9.iterrows():
        row = by_name[rec["metric"]]
        if row.section != section:
            section = row.section
            rows.append(f'<tr class="sec"><td colspan="{len(heads)}">{esc(section)}</td></tr>')
        best = best_pipelines({p: rec[p] for p in labels}, row.direction)
        cells = "".join(_value_cells(rec, p, row.percent, p in best) for p in labels)
        cells += "".join(f'<td class="paper">{fmt(rec[f"paper_{p}"], row.percent)}</td>' for p in papers)
        cells += "".join(f"<td>{fmt_p(rec[c])}</td>" for _, c in shown)
        rows.append(f"<tr><td>{esc(row.name.replace('>=', '≥'))}</td>{cells}</tr>")
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'


def page(title: str, subtitle: list[str], sections: list[Section]) -> str:
    """The whole document."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{"".join(s.blocks)}</section>' for s in sections
    )
    sub = "".join(f"<p>{esc(line)}</p>" for line in subtitle)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1>{sub}</header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
