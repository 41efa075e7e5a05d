"""`harness report` under hostile input (issue 12): it writes only into its own report directories,
escapes study-derived text, never lets a cell become a spreadsheet formula nor a "$" become math
text, reads optuna.db read-only, and turns every broken input into one `error:` line with exit 2."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.report.build import MARKER
from harness.report.export import neutralise, spreadsheet_safe
from harness.testing.cli import assert_error_lines
from harness.testing.datasets import make_dataset
from harness.testing.runs import make_run
from harness.testing.studies import make_study_db

FAST = ["--bootstrap", "20", "--no-gradcam"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("hostile") / "data", n=12, size=(48, 40), seed=0).images


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def report_fails(capsys, argv: list[str], *expected: str) -> str:
    assert main(["-q", "report", *argv]) == 2
    return assert_error_lines(capsys.readouterr().err, *expected)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- item 3: only its own report directory is written into ------------------------------------


def test_a_foreign_directory_is_refused_and_left_alone(run_a, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "holiday.png").write_bytes(b"\x89PNG precious")
    (out / "index.html").write_text("<p>my homepage</p>")
    (out / "table9.csv").write_text("my,table\n")
    (out / "notes.txt").write_text("precious")
    before = tree(out)
    report_fails(capsys, [str(run_a), "--out", str(out), *FAST], f"--out {out}: not empty", MARKER)
    assert tree(out) == before


def test_own_new_empty_and_older_report_directories_are_rebuilt(run_a, tmp_path):
    fresh, empty, older = tmp_path / "new", tmp_path / "empty", tmp_path / "older"
    empty.mkdir()
    (older / "figures").mkdir(parents=True)  # a report of a harness before the marker
    (older / "figures" / "stale.png").write_bytes(b"old figure")
    (older / "index.html").write_text("old")
    (older / "table9.csv").write_text("old")
    for out in (fresh, empty, older):
        assert main(["-q", "report", str(run_a), "--out", str(out), *FAST]) == 0
        assert (out / MARKER).is_file() and (out / "index.html").read_text() != "old"
    assert not (older / "figures" / "stale.png").exists(), "figures of an earlier report do not linger"
    (fresh / "figures" / "stale.png").write_bytes(b"old figure")
    assert main(["-q", "report", str(run_a), "--out", str(fresh), *FAST]) == 0, "a marked directory is ours"
    assert not (fresh / "figures" / "stale.png").exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_or_is_under_a_file_is_one_line(run_a, tmp_path, capsys, where):
    (tmp_path / "f").write_text("precious")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "report"
    report_fails(capsys, [str(run_a), "--out", str(out), *FAST], f"--out {out}")
    assert (tmp_path / "f").read_text() == "precious"


def test_an_unwritable_out_is_one_line(run_a, tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        out = Path("/proc/harness-report")  # not writable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "report"
    report_fails(capsys, [str(run_a), "--out", str(out), *FAST], f"--out {out}: cannot write the report")


def test_a_full_disk_is_one_line(run_a, tmp_path, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "table9.xlsx"))

    monkeypatch.setattr("openpyxl.Workbook.save", full)
    report_fails(capsys, [str(run_a), "--out", str(tmp_path / "out"), *FAST], "No space left on device")


# --- item 11: a study name from optuna.db is data, never markup --------------------------------


def test_study_names_from_optuna_db_are_escaped(tmp_path):
    study = tmp_path / "study"
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    make_study_db(study, n_trials=6, name=evil)
    make_study_db(study, n_trials=6, name="second")  # two studies: each gets its <h3>
    assert main(["-q", "report", str(study), "--out", str(tmp_path / "out"), *FAST]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


# --- item 20: optuna.db is opened read-only -----------------------------------------------------


def test_the_report_never_writes_to_optuna_db(tmp_path, capsys):
    study = tmp_path / "study"
    make_study_db(study, n_trials=6)
    before = (study / "optuna.db").read_bytes()
    assert main(["-q", "report", str(study), "--out", str(tmp_path / "out"), *FAST]) == 0
    assert (study / "optuna.db").read_bytes() == before


def test_a_foreign_sqlite_file_gets_no_optuna_tables(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    con = sqlite3.connect(study / "optuna.db")
    con.execute("CREATE TABLE mine (x INTEGER)")
    con.commit()
    con.close()
    before = (study / "optuna.db").read_bytes()
    report_fails(capsys, [str(study), "--out", str(tmp_path / "out"), *FAST], "optuna.db: cannot read the Optuna")
    assert (study / "optuna.db").read_bytes() == before
    tables = sqlite3.connect(study / "optuna.db").execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("mine",)]


# --- items 12 and 13: formulas and math text from run names, image ids and study names ------------


@pytest.mark.parametrize("text,safe", [
    ("=1+2", "'=1+2"), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'), ("\t=1", "'\t=1"),
    ("-0.5", "-0.5"), ("+3", "+3"), ("b12", "b12"), ("", ""), (1.5, 1.5), (None, None),
])
def test_neutralise(text, safe):
    assert neutralise(text) == safe


def test_spreadsheet_safe_covers_cells_and_headers_but_not_numbers():
    df = pd.DataFrame({"=cmd": ["=1+2", "ok"], "value": [-1.0, 2.0], "level": ["-0.1", "@x"]})
    out = spreadsheet_safe(df)
    assert list(out.columns) == ["'=cmd", "value", "level"]
    assert out["'=cmd"].tolist() == ["'=1+2", "ok"]
    assert out["value"].tolist() == [-1.0, 2.0] and out["level"].tolist() == ["-0.1", "'@x"]


def test_formula_like_names_and_ids_stay_text_and_dollars_stay_literal(images, tmp_path):
    """A run directory named "=1+2" and "$x^$", image ids "=HYPERLINK(..)", "+1+2", "@SUM(1)" and "$\\frac$",
    a study named "$\\sqrt$": the report builds, no xlsx cell is a formula and no csv cell starts one."""
    from openpyxl import load_workbook

    runs = [make_run(tmp_path / "ra", images, "a", seed=1, epochs=3).rename(tmp_path / "=1+2"),
            make_run(tmp_path / "rb", images, "b", seed=1, epochs=3).rename(tmp_path / "$x^$")]
    hostile_ids = ['=HYPERLINK("evil","x")', "+1+2", "@SUM(1)", "$\\frac{$"]
    for run in runs:
        df = pd.read_csv(run / "predictions.csv", dtype={"image_id": str})
        lesion = df.index[df["label"] != 2][: len(hostile_ids)]
        for i, new in zip(lesion, hostile_ids, strict=True):
            (run / "pred_masks" / f"{df.loc[i, 'image_id']}.png").rename(run / "pred_masks" / f"{new}.png")
            df.loc[i, "image_id"] = new
        df.to_csv(run / "predictions.csv", index=False)
    out = tmp_path / "out"
    assert main(["-q", "report", *map(str, runs), "--out", str(out), *FAST]) == 0
    assert {p.name for p in (out / "figures").glob("overlay_*.png")}, "the overlays with $ in their titles drew"
    wb = load_workbook(out / "table9.xlsx")
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c.coordinate for c in cells if c.data_type == "f"], "no cell is a formula"
    assert "=1+2" in {c.value for c in wb["Per-run"]["A"]}, "the run name is kept, as text"
    for csv in out.glob("*.csv"):
        for line in csv.read_text().splitlines():
            assert not any(cell.startswith(("=", "@")) for cell in line.split(",")), (csv.name, line)
    study = tmp_path / "study"
    make_study_db(study, n_trials=6, name="$\\sqrt{$")
    make_study_db(study, n_trials=6, name="$x$")
    assert main(["-q", "report", str(study), "--out", str(tmp_path / "study_out"), *FAST]) == 0
    assert (tmp_path / "study_out" / "figures" / "study_trials_0.png").exists()


# --- items 14 and 23: every broken input is one line, exit 2 ----------------------------------


def _edit_csv(column: str, value):
    def edit(run: Path) -> None:
        df = pd.read_csv(run / "predictions.csv")
        df[column] = df[column].astype(object)
        df.loc[df.index[2], column] = value
        df.to_csv(run / "predictions.csv", index=False)
    return edit


def _stage_json(text: str):
    def edit(run: Path) -> None:
        for p in (run / "stages").glob("*.json"):
            p.write_text(text)
    return edit


BROKEN = {
    "metrics_0xff": (lambda r: (r / "metrics.json").write_bytes(b'{"pipeline": "a"\xff}'), "metrics.json"),
    "metrics_not_object": (lambda r: (r / "metrics.json").write_text("[1, 2]"), "metrics.json"),
    "predictions_0xff": (lambda r: (r / "predictions.csv").write_bytes(
        (r / "predictions.csv").read_bytes().replace(b"val,", b"v\xffal,", 1)), "predictions.csv"),
    "config_0xff": (lambda r: (r / "config.yaml").write_bytes(b"pipeline: a\n\xff\xfe: 1\n"), "config.yaml"),
    "config_runtime_oops": (lambda r: (r / "config.yaml").write_text("pipeline: a\nruntime: oops\n"),
                            "config.yaml: runtime must be a mapping"),
    "config_seed_text": (lambda r: (r / "config.yaml").write_text("pipeline: a\nruntime: {seed: x}\n"),
                         "runtime.seed must be an integer"),
    "config_pipeline": (lambda r: (r / "config.yaml").write_text("pipeline: zz\n"), "cannot tell the pipeline"),
    "label_1.5": (_edit_csv("label", 1.5), "line 4, column label: must be a class"),
    "pred_label_7": (_edit_csv("pred_label", 7), "column pred_label"),
    "label_empty": (_edit_csv("label", None), "column label"),
    "dice_text": (_edit_csv("dice", "abc"), "column dice: must be a finite number"),
    "prob_inf": (_edit_csv("prob_benign", "inf"), "column prob_benign"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_run_is_one_line_naming_the_file(run_a, tmp_path, capsys, case):
    edit, expected = BROKEN[case]
    run = copy_run(run_a, tmp_path / "run")
    edit(run)
    report_fails(capsys, [str(run), "--out", str(tmp_path / "out"), *FAST], str(run), expected)
    assert not (tmp_path / "out").exists(), "nothing is written for a run that does not load"


@pytest.mark.parametrize("stage", ['{"history": "not a list", "best_epoch": "x"}', '{"history": [1, 2]}',
                                   '{"history": [{"epoch": "one"}]}', "[]", '{"x": 1'])
def test_a_broken_stage_record_loses_its_curve_not_the_report(run_a, tmp_path, capsys, caplog, stage):
    run = copy_run(run_a, tmp_path / "run")
    _stage_json(stage)(run)
    assert main(["-q", "report", str(run), "--out", str(tmp_path / "out"), *FAST]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert str(run / "stages") in caplog.text, "the stage file is named in a warning"


def test_a_non_numeric_stored_metric_is_a_warning(run_a, tmp_path, caplog):
    run = copy_run(run_a, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "balanced_accuracy": "high"}))
    assert main(["-q", "report", str(run), "--out", str(tmp_path / "out"), *FAST]) == 0
    assert "balanced_accuracy is 'high', not a number" in caplog.text


@pytest.mark.parametrize("option,expected", [
    (["--bootstrap", "0"], "--bootstrap must be an integer in [1, 100000], but got 0"),
    (["--bootstrap", "-5"], "--bootstrap must be an integer in [1, 100000], but got -5"),
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295], but got -1"),
    (["--good-dice", "nan"], "--good-dice must be a number in [0, 1], but got nan"),
    (["--good-dice", "1.5"], "--good-dice must be a number in [0, 1], but got 1.5"),
])
def test_bad_options_are_one_line(run_a, tmp_path, capsys, option, expected):
    report_fails(capsys, [str(run_a), "--out", str(tmp_path / "out"), "--no-gradcam", *option], expected)
    assert not (tmp_path / "out").exists()


def test_a_stage_record_naming_a_device_is_not_opened(run_a, tmp_path):
    """Grad-CAM loads the checkpoint a stage record names: /dev/zero or a FIFO would hang or fill memory."""
    import os

    from harness.errors import DataError
    from harness.pipelines.artifacts import load_classifier

    run = copy_run(run_a, tmp_path / "run")
    os.mkfifo(tmp_path / "fifo")
    for target in ("/dev/zero", str(tmp_path / "fifo"), str(tmp_path)):
        for p in (run / "stages").glob("*.json"):
            record = json.loads(p.read_text())
            p.write_text(json.dumps({**record, "checkpoint": target}))
        with pytest.raises(DataError, match="is not a regular file"):
            load_classifier(run)
