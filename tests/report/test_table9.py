"""Table 9: rows, paper values, uncertainty, missing pipelines, paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.stats import across_seeds, mcnemar, wilcoxon
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
    assert list(table.columns) == ["metric", "A", "paper_A", "A_ci_low", "A_ci_high", "A_std", "A_seed_ci_low",
                                   "A_seed_ci_high", "A_runs", "B", "paper_B", "B_ci_low", "B_ci_high", "B_std",
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


def test_missing_pipeline_gives_empty_column(run_a):
    src = load_sources([run_a])
    table, tests = build_table9(group_by_pipeline(src.runs), n_boot=50)
    assert table["B"].isna().all() and table["B_ci_low"].isna().all() and (table["B_runs"] == 0).all()
    assert table["A"].notna().all() and tests.empty and table["p_value"].isna().all()


def test_several_seeds_mean_std_and_t_ci(fake_root):
    paths = [fake_root / n for n in ("a_s1", "a_s2", "b_s1", "b_s2")]
    src = load_sources(paths)
    table, tests = build_table9(group_by_pipeline(src.runs), n_boot=100)
    t = table.set_index("metric")
    values = [r.metrics["balanced_accuracy"] for r in src.runs if r.label == "A"]
    s = across_seeds(np.array(values))
    assert t.loc["Balanced Accuracy", "A"] == pytest.approx(s["mean"])
    assert t.loc["Balanced Accuracy", "A_std"] == pytest.approx(s["std"])
    assert t.loc["Balanced Accuracy", "A_seed_ci_low"] == pytest.approx(s["ci_low"])
    assert (t["A_runs"] == 2).all()
    assert len(tests) == 4


def test_paired_tests_match_direct_computation(one_seed):
    src, table, tests = one_seed
    a, b = (next(r.predictions for r in src.runs if r.label == p) for p in "AB")
    assert (a["image_id"].to_numpy() == b["image_id"].to_numpy()).all()
    direct = mcnemar((a.pred_label == a.label).to_numpy(), (b.pred_label == b.label).to_numpy())
    row = tests[tests["scope"] == "all images: correct class"].iloc[0]
    assert row["p_value"] == pytest.approx(direct.pvalue) and row["n_informative"] == direct.n
    lesion = (a.label < 2).to_numpy()
    w = wilcoxon(a.dice.to_numpy()[lesion], b.dice.to_numpy()[lesion])
    assert tests[tests["test"].str.startswith("Wilcoxon")]["p_value"].iloc[0] == pytest.approx(w.pvalue)
    t = table.set_index("metric")
    assert t.loc["Mean Dice", "p_value"] == pytest.approx(w.pvalue)
    assert t.loc["Macro F1", "test"] == "McNemar (exact)"


def test_bootstrap_is_seeded(run_a, run_b):
    src = load_sources([run_a, run_b])
    g = group_by_pipeline(src.runs)
    t1, _ = build_table9(g, n_boot=100, seed=3)
    t2, _ = build_table9(g, n_boot=100, seed=3)
    t3, _ = build_table9(g, n_boot=100, seed=4)
    assert t1.equals(t2) and not t1.equals(t3)
