"""Table 9 exports: csv == xlsx numbers, markdown, LaTeX."""

from __future__ import annotations

import math

import openpyxl
import pandas as pd
import pytest

from harness.report.build import compute
from harness.report.export import fmt, fmt_p, table9_latex, table9_markdown, tex_escape, write_table9
from harness.report.loader import load_sources


@pytest.fixture(scope="module")
def written(tmp_path_factory, run_a, run_b):
    data = compute(load_sources([run_a, run_b]), n_boot=100)
    out = tmp_path_factory.mktemp("export")
    files = write_table9(out, data.table9, data.tests, data.sheets, data.caption)
    return data, out, files


def test_all_four_files(written):
    _, out, files = written
    assert [f.name for f in files] == ["table9.csv", "table9.xlsx", "table9.md", "table9.tex"]
    assert all(f.stat().st_size > 0 for f in files)


def test_xlsx_holds_the_csv_numbers(written):
    _, out, _ = written
    csv = pd.read_csv(out / "table9.csv")
    wb = openpyxl.load_workbook(out / "table9.xlsx")
    ws = wb["Table 9"]
    header = [c.value for c in ws[1]]
    assert header[:5] == ["metric", "A", "paper_A", "B", "paper_B"]  # paper column beside ours
    assert set(header) == set(csv.columns)
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(rows) == len(csv)
    for rec, xrow in zip(csv.to_dict("records"), rows, strict=True):
        x = dict(zip(header, xrow, strict=False))  # openpyxl rows may be wider than the header
        for col, v in rec.items():
            if isinstance(v, float) and math.isnan(v):
                assert x[col] in (None, ""), col
            elif isinstance(v, float):
                assert x[col] == pytest.approx(v, rel=1e-12), col
            else:
                assert x[col] == v, col
    assert ws["A1"].font.bold and ws.freeze_panes == "B2"
    assert ws.cell(row=7, column=1).value == "Dice >= 0.7"
    assert ws.cell(row=7, column=2).number_format == "0.0%"
    assert ws.cell(row=2, column=2).number_format == "0.000"
    assert {"Per-class", "Dice by size", "Error propagation", "Per-run", "Paired tests"} <= set(wb.sheetnames)


def test_markdown_layout(written):
    data, out, _ = written
    md = (out / "table9.md").read_text()
    assert "| Metric | Pipeline A | 95% CI | Pipeline B |" in md
    assert "| *Segmentation performance* |" in md and "| Dice ≥ 0.9 |" in md
    assert "Paired tests" in md
    assert table9_markdown(data.table9).count("\n") == 2 + 10 + 3


def test_latex_is_booktabs_and_escaped(written):
    _, out, _ = written
    tex = (out / "table9.tex").read_text()
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lccccc}"):
        assert cmd in tex
    body = tex.split(r"\midrule")[1]
    assert "%" not in body.replace(r"\%", "") and ">=" not in body
    assert all(line.endswith(r"\\") for line in body.splitlines() if "&" in line)
    assert tex.count("{") == tex.count("}")


def test_formatting_helpers():
    assert fmt(0.84391) == "0.844" and fmt(0.837, percent=True) == "83.7%" and fmt(float("nan")) == "–"
    assert fmt_p(0.0004) == "< 0.001" and fmt_p(0.04) == "0.040"
    assert tex_escape("Dice >= 0.7 & 50% of a_b") == r"Dice $\geq$ 0.7 \& 50\% of a\_b"


def test_multi_seed_cells_show_std(fake_root, tmp_path):
    data = compute(load_sources([fake_root / n for n in ("a_s1", "a_s2", "b_s1")]), n_boot=50)
    md = table9_markdown(data.table9)
    assert " ± " in md.splitlines()[3]  # A has two runs
    assert "2 runs" in data.caption
    assert r"$\pm$" in table9_latex(data.table9)
