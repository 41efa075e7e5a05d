"""The ablation table from a levels study's plan and final runs (fake runs, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.report.ablation import COLUMNS, compute_ablation
from harness.report.loader import load_sources
from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run
from harness.tune.levels import plan, read_plan, write_plan
from harness.tune.study import StudySpec

ACCURACY = {0.0: 0.6, 0.2: 0.8, 0.4: 0.9}


def spec(**fields) -> StudySpec:
    raw = {"name": "abl", "pipelines": ["b"], "base": {"b": "tiny-b"}, "sampler": "grid",
           "search_space": {"params": {"roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.2}}},
           "final": {"mode": "levels", "seeds": [1, 2, 3]}}
    raw.update(fields)
    return StudySpec.model_validate(raw)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("abl")
    s = spec()
    planned = plan(s)
    write_plan(planned, root / "final", s)
    images = make_dataset(root / "data", n=60, size=48, seed=0).images
    for r in planned:
        margin = r.overrides.get("roi.margin", 0.2)
        make_run(root / "final" / r.dir_name, images, r.pipeline, seed=r.seed, accuracy=ACCURACY[margin],
                 test_fraction=0.7)
    runs = load_sources([root / "final" / r.dir_name for r in planned]).runs
    return root, runs


def test_every_level_of_the_axis_with_its_interval_and_test(study):
    root, runs = study
    ab = compute_ablation(runs, read_plan(root / "final"), n_boot=200)
    t = ab.table
    assert list(t.columns[: len(COLUMNS)]) == COLUMNS
    bacc = t[t.metric == "balanced_accuracy"].set_index("level")
    assert list(bacc.index) == ["0.2", "0", "0.4"]  # reference first
    assert bacc.loc["0.2", "reference"] and bacc.loc["0.2", "delta"] == 0 and np.isnan(bacc.loc["0.2", "p_value"])
    assert (bacc.n_runs == 3).all()
    for level, row in bacc.iterrows():  # mean over the level's runs, recomputed independently
        variant = "reference" if level == "0.2" else f"roi.margin={level}"
        dirs = {f"b-{variant}-seed{s}" for s in (1, 2, 3)}
        mine = [r.metrics["balanced_accuracy"] for r in runs if r.path.name in dirs]
        assert row["mean"] == pytest.approx(np.mean(mine))
        assert row.ci_low <= row["mean"] <= row.ci_high
    assert bacc.loc["0", "delta"] < 0 < bacc.loc["0.4", "delta"]
    assert bacc.loc["0", "p_value"] >= bacc.loc["0", "p_raw"]  # Holm never lowers a p-value



def test_ablation_files_and_report_section(study, tmp_path):
    from harness.report.ablation_figures import axis_figure
    from harness.report.ablation_files import axis_blocks, write_ablation
    from harness.report.figures import save

    root, runs = study
    ab = compute_ablation(runs, read_plan(root / "final"), n_boot=100)
    paths = write_ablation(tmp_path, ab)
    assert [p.name for p in paths] == ["ablation.csv", "ablation.xlsx", "ablation.md", "ablation.tex"]
    import pandas as pd

    csv = pd.read_csv(paths[0])
    assert list(csv.columns) == COLUMNS and len(csv) == 3 * 10  # 3 levels x 10 Table 9 metrics
    tex = paths[3].read_text()
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\textit{(ref.)}" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    n_cols = tex.split(r"\begin{tabular}{")[1].split("}")[0].__len__()
    for line in filter(None, (ln.strip() for ln in body.splitlines())):  # every row has every column
        assert line.endswith(r"\\") and line.count("&") == n_cols - 1
    assert "(ref.)" in paths[2].read_text()
    (p, a, block), = axis_blocks(ab)
    assert save(axis_figure(block), tmp_path / "fig.png").stat().st_size > 1000


def test_two_axes_give_an_interaction_table_and_the_pipeline_axis(tmp_path):
    from harness.report.ablation_figures import interaction_figure
    from harness.report.ablation_files import ablation_markdown
    from harness.report.figures import save

    s = spec(pipelines=["a", "b"], base={"a": "tiny-a", "b": "tiny-b"}, search_space={"params": {
        "classifier.augment.vflip": {"type": "categorical", "choices": [True, False]},
        "eval.tta_views": {"type": "categorical", "choices": [["identity", "hflip", "vflip"], ["identity", "hflip"]]}}},
        final={"mode": "levels", "seeds": [1, 2]})
    planned = plan(s)
    write_plan(planned, tmp_path / "final", s)
    images = make_dataset(tmp_path / "data", n=30, size=40, seed=0).images
    for r in planned:
        make_run(tmp_path / "final" / r.dir_name, images, r.pipeline, seed=r.seed + len(r.overrides),
                 test_fraction=0.5)
    runs = load_sources([tmp_path / "final" / r.dir_name for r in planned]).runs
    ab = compute_ablation(runs, read_plan(tmp_path / "final"), n_boot=50)
    assert {("A", "classifier.augment.vflip"), ("B", "eval.tta_views"), ("all", "pipeline")} <= set(
        zip(ab.table.pipeline, ab.table.axis, strict=True))
    assert len(ab.interactions) == 2  # one per pipeline
    inter = ab.interactions[0]
    cells = inter[inter.metric == "balanced_accuracy"]
    assert len(cells) == 4 and (cells.n_runs == 2).all()  # 2 x 2 levels, each with both seeds
    assert "Interaction" in ablation_markdown(ab)
    assert save(interaction_figure(inter), tmp_path / "heat.png").stat().st_size > 1000
