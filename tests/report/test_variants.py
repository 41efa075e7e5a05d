"""No pooling: runs that differ in more than the seed are separate column groups; a run given twice
counts once; too many configurations are refused with exit 2."""

from __future__ import annotations

import logging

import pytest

from harness.errors import DataError
from harness.report.loader import group_by_pipeline, load_sources
from harness.report.variants import MAX_VARIANTS, differing_fields, result_fields
from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    images = make_dataset(root / "data", n=24, size=(64, 48), seed=0, images_per_patient=(1, 2, 3)).images
    out = {}
    for seed in (1, 2):
        out[f"b03_s{seed}"] = make_run(root / f"b03_s{seed}", images, "b", seed=seed, config={"roi": {"margin": 0.3}})
        out[f"b02_s{seed}"] = make_run(root / f"b02_s{seed}", images, "b", seed=seed, config={"roi": {"margin": 0.2}})
    # A does not read roi.*, and runtime.* never changes results: one variant
    out["a_s1"] = make_run(root / "a_s1", images, "a", seed=1, config={"roi": {"margin": 0.3}})
    out["a_s2"] = make_run(root / "a_s2", images, "a", seed=2, config={"runtime": {"device": "cpu", "threads": 1}})
    for k, margin in enumerate((0.1, 0.4, 0.5, 0.6, 0.7)):
        out[f"b_many{k}"] = make_run(root / f"b_many{k}", images, "b", seed=1, config={"roi": {"margin": margin}})
    return out


def test_result_fields_ignore_seed_name_paths_runtime_and_sections_the_pipeline_does_not_read():
    a = {"name": "x", "pipeline": "a", "runtime": {"seed": 1, "device": "cpu"}, "data": {"dir": "/d", "split": "s"},
         "roi": {"margin": 0.3}, "classifier": {"lr_head": 0.001}}
    fields = result_fields(a, "a")
    assert fields == {"pipeline": "a", "data.split": "s", "classifier.lr_head": 0.001}
    assert "roi.margin" in result_fields(a, "b")
    assert differing_fields([{"x": 1, "y": [1, 2]}, {"x": 1, "y": [1, 3]}, {"x": 1}]) == ["y"]


def test_configurations_are_column_groups_labelled_by_the_differing_fields(runs, caplog):
    from harness.report.build import compute
    from harness.report.export import table9_markdown

    paths = [runs[k] for k in ("a_s1", "a_s2", "b03_s1", "b02_s1", "b03_s2", "b02_s2")]
    with caplog.at_level(logging.WARNING):
        groups = group_by_pipeline(load_sources(paths).runs)
    assert list(groups) == ["A", "B (roi.margin=0.3)", "B (roi.margin=0.2)"]
    assert [r.name for r in groups["B (roi.margin=0.3)"]] == ["b03_s1", "b03_s2"] and len(groups["A"]) == 2
    assert "separate columns" in caplog.text
    data = compute(load_sources(paths), n_boot=50)
    table = data.table9
    assert (table["B (roi.margin=0.2)_runs"] == 2).all() and "paper_B (roi.margin=0.2)" not in table.columns
    assert set(data.tests["pair"]) == {"A vs B (roi.margin=0.3)", "A vs B (roi.margin=0.2)",
                                       "B (roi.margin=0.3) vs B (roi.margin=0.2)"}
    assert "| Pipeline B (roi.margin=0.3) | 95% CI |" in table9_markdown(table)
    assert "different configurations are separate columns" in data.caption
    per_run = data.sheets["Per-run"].set_index("run")
    assert per_run.loc["b02_s2", "pipeline"] == "B (roi.margin=0.2)" and per_run.loc["a_s2", "pipeline"] == "A"


def test_a_run_given_twice_counts_once(runs, caplog, tmp_path):
    link = tmp_path / "same_run"
    link.symlink_to(runs["a_s1"], target_is_directory=True)  # another path, the same resolved directory
    with caplog.at_level(logging.WARNING):
        src = load_sources([runs["a_s1"], runs["a_s2"], runs["a_s1"], link])
    assert [r.name for r in src.runs] == ["a_s1", "a_s2"] and caplog.text.count("given twice") == 2
    assert group_by_pipeline(src.runs)["A"] == src.runs


def test_more_configurations_than_columns_is_refused_with_exit_2(runs, capsys):
    from harness.cli import main

    paths = [runs[f"b_many{k}"] for k in range(MAX_VARIANTS + 1)]
    with pytest.raises(DataError, match=r"pipeline B: the runs are 5 different configurations \(they differ in "
                                        r"roi.margin\)"):
        group_by_pipeline(load_sources(paths).runs)
    assert main(["-q", "report", *map(str, paths), "--bootstrap", "20", "--no-gradcam"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "roi.margin" in err and len(err.strip().splitlines()) == 1
