"""Table 9: rows, paper values, uncertainty, missing pipelines, paired tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.metrics.stats import across_seeds
from harness.report.loader import group_by_pipeline, load_sources
from harness.report.table9 import TABLE9_ROWS, build_table9, table9_columns

ROW_NAMES = ["Balanced Accuracy", "Macro F1", "Cohen's Kappa", "Mean Dice", "Median Dice", "Dice >= 0.7",
             "Dice >= 0.8", "Dice >= 0.9", "Malignant Sensitivity", "Malignant Specificity"]


@pytest.fixture(scope="module")
def one_seed(run_a, run_b):
    src = load_sources([run_a, run_b])
    return src, *build_table9(group_by_pipeline(src.runs), n_boot=200)


def test_rows_columns_and_paper_values(one_seed):
    _, table, _ = one_seed
    assert table["metric"].tolist() == ROW_NAMES
    assert list(table.columns) == table9_columns(["A", "B"])
    assert list(table.columns) == ["metric", "A", "paper_A", "A_ci_low", "A_ci_high", "A_std", "A_hier_ci_low",
                                   "A_hier_ci_high", "A_seed_ci_low", "A_seed_ci_high", "A_runs", "B", "paper_B",
                                   "B_ci_low", "B_ci_high", "B_std", "B_hier_ci_low", "B_hier_ci_high",
                                   "B_seed_ci_low", "B_seed_ci_high", "B_runs", "test", "p_value", "p_holm"]
    paper = table.set_index("metric")
    assert paper.loc["Balanced Accuracy", "paper_A"] == 0.8439 and paper.loc["Dice >= 0.9", "paper_B"] == 0.658
    assert paper.loc["Malignant Specificity", "paper_B"] == 0.8596


def test_values_equal_run_metrics_and_ci_brackets_them(one_seed):
    src, table, _ = one_seed
    t = table.set_index("metric")
    for run in src.runs:
        p = run.label
        for row in TABLE9_ROWS:
            v = run.metrics[row.key]
            assert t.loc[row.name, p] == pytest.approx(v)
            assert t.loc[row.name, f"{p}_ci_low"] <= v + 1e-12 <= t.loc[row.name, f"{p}_ci_high"] + 2e-12
        assert t[f"{p}_std"].isna().all() and (t[f"{p}_runs"] == 1).all()


def test_one_pipeline_gives_its_columns_and_no_test(run_a):
    src = load_sources([run_a])
    groups = group_by_pipeline(src.runs)
    assert list(groups) == ["A"]
    table, tests = build_table9(groups, n_boot=50)
    assert "B" not in table.columns and table["A"].notna().all() and tests.empty


def test_missing_pipeline_asked_for_gives_empty_column(run_a):
    src = load_sources([run_a])
    table, tests = build_table9({**group_by_pipeline(src.runs), "B": []}, n_boot=50)
    assert table["B"].isna().all() and table["B_ci_low"].isna().all() and (table["B_runs"] == 0).all()
    assert table["A"].notna().all() and tests.empty and table["p_value"].isna().all()


def test_two_seeds_mean_std_seed_patient_ci_and_no_t_ci(fake_root):
    paths = [fake_root / n for n in ("a_s1", "a_s2", "b_s1", "b_s2")]
    src = load_sources(paths)
    table, tests = build_table9(group_by_pipeline(src.runs), n_boot=100)
    t = table.set_index("metric")
    values = [r.metrics["balanced_accuracy"] for r in src.runs if r.label == "A"]
    s = across_seeds(np.array(values))
    assert t.loc["Balanced Accuracy", "A"] == pytest.approx(s["mean"])
    assert t.loc["Balanced Accuracy", "A_std"] == pytest.approx(s["std"])
    assert t[["A_seed_ci_low", "A_seed_ci_high"]].isna().all(axis=None)  # no t interval with 2 seeds
    assert (t["A_hier_ci_low"] <= t["A"] + 1e-12).all() and (t["A"] <= t["A_hier_ci_high"] + 1e-12).all()
    assert (t["A_runs"] == 2).all()
    assert len(tests) == 10  # one test per row


def test_paired_tests_match_direct_computation(one_seed):
    """Oracles: scipy's Wilcoxon on per-patient mean lesion Dice (pandas groupby), and a permutation
    test written as a plain loop over the same patient swaps with scikit-learn's balanced accuracy."""
    from scipy import stats as sps
    from sklearn.metrics import balanced_accuracy_score

    from harness.metrics.stats import patient_swaps

    src, table, tests = one_seed
    a, b = (next(r.predictions for r in src.runs if r.label == p) for p in "AB")
    assert (a["image_id"].to_numpy() == b["image_id"].to_numpy()).all()
    t = table.set_index("metric")
    by_row = tests.set_index("metric")
    lesion = a.label < 2
    per_patient = pd.DataFrame({"p": a.patient_id, "a": a.dice, "b": b.dice})[lesion].groupby("p").mean()
    w = sps.wilcoxon(per_patient["a"], per_patient["b"])
    assert t.loc["Mean Dice", "p_value"] == pytest.approx(w.pvalue)
    assert by_row.loc["Mean Dice", "n_patients"] == len(per_patient) < lesion.sum()
    assert t.loc["Macro F1", "test"] == "Permutation (patients)"

    y, pa, pb = a.label.to_numpy(), a.pred_label.to_numpy(), b.pred_label.to_numpy()
    observed = balanced_accuracy_score(y, pa) - balanced_accuracy_score(y, pb)
    swaps = patient_swaps(a.patient_id.to_numpy(), 200, 0)
    extreme = 0
    for sw in swaps:
        d = balanced_accuracy_score(y, np.where(sw, pb, pa)) - balanced_accuracy_score(y, np.where(sw, pa, pb))
        extreme += abs(d) >= abs(observed) - 1e-12
    assert by_row.loc["Balanced Accuracy", "statistic"] == pytest.approx(observed)
    assert t.loc["Balanced Accuracy", "p_value"] == pytest.approx((1 + extreme) / 201)
    assert by_row.loc["Balanced Accuracy", "difference"] == pytest.approx(observed)
    assert by_row.loc["Balanced Accuracy", "diff_ci_low"] <= observed <= by_row.loc["Balanced Accuracy", "diff_ci_high"]


def test_bootstrap_is_seeded(run_a, run_b):
    src = load_sources([run_a, run_b])
    g = group_by_pipeline(src.runs)
    t1, _ = build_table9(g, n_boot=100, seed=3)
    t2, _ = build_table9(g, n_boot=100, seed=3)
    t3, _ = build_table9(g, n_boot=100, seed=4)
    assert t1.equals(t2) and not t1.equals(t3)


@pytest.fixture(scope="module")
def three(fake_root):
    """Three pipelines: C (a second seed of A, under another label) has no paper values."""
    src = load_sources([fake_root / n for n in ("a_s1", "b_s1", "a_s2")])
    a, b, c = src.runs
    return build_table9({"A": [a], "B": [b], "C": [c]}, n_boot=100)


def test_three_pipelines_columns_and_pairs(three):
    table, tests = three
    assert list(table.columns) == table9_columns(["A", "B", "C"])
    assert "paper_C" not in table.columns and {"C", "C_ci_low", "C_runs"} <= set(table.columns)
    for pair in ("A_B", "A_C", "B_C"):
        assert {f"p_value_{pair}", f"p_holm_{pair}"} <= set(table.columns)
    assert "p_value" not in table.columns
    assert tests["pair"].tolist() == [p for p in ("A vs B", "A vs C", "B vs C") for _ in range(10)]
    assert tests.loc[tests["pair"] == "A vs B", "C"].isna().all()
    assert tests.loc[tests["pair"] == "B vs C", ["B", "C"]].notna().all(axis=None)


def test_holm_over_pairs_per_row(three):
    from harness.metrics.stats import holm

    table, tests = three
    for _metric, sub in tests.groupby("metric"):
        assert len(sub) == 3 and sub["p_holm"].to_numpy() == pytest.approx(holm(sub["p_value"].to_numpy()))
    t = table.set_index("metric")
    w = tests[tests["metric"] == "Mean Dice"].set_index("pair")
    assert t.loc["Mean Dice", "p_value_A_C"] == pytest.approx(w.loc["A vs C", "p_value"])
    d9 = tests[tests["metric"] == "Dice >= 0.9"].set_index("pair")
    assert t.loc["Dice >= 0.9", "p_holm_B_C"] == pytest.approx(d9.loc["B vs C", "p_holm"])
    assert (t["p_holm_A_B"] >= t["p_value_A_B"]).all()


def test_order_of_groups_is_column_order(fake_root):
    src = load_sources([fake_root / "a_s1", fake_root / "b_s1"])
    g = group_by_pipeline(src.runs)
    table, tests = build_table9({"B": g["B"], "A": g["A"]}, n_boot=20)
    assert table.columns[1:3].tolist() == ["B", "paper_B"] and tests["pair"].unique().tolist() == ["B vs A"]


def test_three_pipelines_render(three):
    from harness.report.export import table9_latex, table9_markdown, tests_markdown
    from harness.report.html import best_pipelines, table9_html

    table, tests = three
    md = table9_markdown(table)
    head = md.splitlines()[0]
    assert "| Pipeline C | 95% CI |" in head and "Paper C" not in head and "p Holm (B vs C)" in head
    assert md.count("\n") == 2 + 10 + 3
    assert r"\begin{tabular}{l" + "c" * 8 + "}" in table9_latex(table)  # 3 pipelines, 2 paper columns, 3 p
    assert "| Pair |" in tests_markdown(tests) and "A vs C" in tests_markdown(tests)
    html = table9_html(table)
    assert html.count("<th>Pipeline ") == 3 and 'colspan="12"' in html
    assert best_pipelines({"A": 0.8, "B": 0.9, "C": 0.9}, "max") == {"B", "C"}
    assert best_pipelines({"A": 3.0, "B": 2.0, "C": float("nan")}, "min") == {"B"}
    assert best_pipelines({"A": 0.5, "B": 0.5}, "max") == set() and best_pipelines({"A": 1.0}, "max") == set()
