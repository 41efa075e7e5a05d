"""`harness report` end to end through the CLI entry point."""

from __future__ import annotations

import shutil

import pytest

from harness.cli import main


def test_report_verb_writes_files(run_a, run_b, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["-q", "report", str(run_a), str(run_b), "--out", str(out), "--bootstrap", "50", "--no-gradcam"]) == 0
    for name in ("table9.csv", "table9.xlsx", "table9.md", "table9.tex"):
        assert (out / name).exists(), name
    assert f"report written to {out}" in capsys.readouterr().out


def test_missing_run_is_a_clean_error(run_a, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run_a, broken)
    (broken / "predictions.csv").unlink()
    assert main(["report", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "predictions.csv: not found; run `harness run` first" in err
    assert "Traceback" not in err


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_degenerate_run_reports_without_warnings(tmp_path):
    """A classifier that is always wrong (no correct lesion, no conditional Dice) still reports."""
    from harness.testing.datasets import make_dataset
    from harness.testing.runs import make_run

    images = make_dataset(tmp_path / "data", n=12, size=(64, 48), seed=3).images
    run = make_run(tmp_path / "bad", images, "a", seed=1, accuracy=0.0)
    assert main(["-q", "report", str(run), "--bootstrap", "30", "--no-gradcam"]) == 0
    assert (run / "report" / "index.html").exists()
