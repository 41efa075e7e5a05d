"""Studies under hostile input (issue 12, no Ray): every problem at load in one list, broken study files
and databases as one line, passwords never shown nor pickled, status read-only, `quickstart --fresh`
deleting only its own study, and a study whose pipeline has no complete trial failing."""

from __future__ import annotations

import pickle
import sqlite3

import optuna
import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.testing.cli import assert_error_lines
from harness.tune.study import StudySpec, load_study

GOOD = {"name": "st", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "trials": 2,
        "search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]}}}}


def write(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else yaml.safe_dump(data).encode())
    return str(path)


def one_error_line(capsys, *expected: str) -> str:
    return assert_error_lines(capsys.readouterr().err, *expected)


# --- item 17: everything checked at load, spec and search space together -----------------------


def test_missing_trials_and_a_misspelt_parameter_are_reported_together(tmp_path):
    raw = {**GOOD, "search_space": {"params": {"roi.margn": {"type": "float", "low": 0, "high": 0.4}},
                                    "simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focall"]}]}}
    raw.pop("trials")
    with pytest.raises(ConfigError) as e:
        load_study(write(tmp_path / "s.yaml", raw))
    text = "\n".join(e.value.problems)
    assert "trials (or trials_per_pipeline) must be set" in text
    assert "search_space.params.roi.margn: not a run config field" in text and 'Did you mean "margin"' in text
    assert "segmenter.loss.focall" in text and 'Did you mean "focal"' in text


@pytest.mark.parametrize("fields,expected", [
    ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
    ({"seed": 2**64}, "less than or equal to 4294967295"),
    ({"seed": 2**32 - 1}, "pipeline k's sampler uses seed + k"),
    ({"final": {"seeds": [-1]}}, "final.seeds.0: Input should be greater than or equal to 0"),
    ({"final": {"seeds": [2**32]}}, "final.seeds.0: Input should be less than or equal to 4294967295"),
    ({"data": {"split_seed": -1}}, "data.split_seed"),
    ({"name": "../escape"}, "name: must be a plain name"),
    ({"name": "/abs"}, "name: must be a plain name"),
    ({"name": ""}, "name: must be a plain name"),
    ({"time_budget_minutes": float("inf")}, "finite number"),
    ({"resources": {"cpu": float("nan")}}, "finite number"),
    ({"overrides": {"classifier.lr_head": float("inf")}}, "classifier.lr_head: Input should be a finite number"),
    ({"overrides": {"runtime.seed": -1}}, "runtime.seed: Input should be greater than or equal to 0"),
    ({"search_space": {"params": {"classifier.lr_head": {"type": "float", "low": 1e-3, "high": float("inf")}}}},
     "finite number"),
    ({"search_space": {"params": {"classifier.head_hidden": {"type": "int", "low": 0, "high": 64, "log": True}}}},
     "log=true needs low >= 1"),
    ({"search_space": {"params": {"eval.tta": {"type": "categorical", "choices": [True, "maybe"]}}}},
     "search_space.params.eval.tta='maybe' gives an invalid config"),
    ({"search_space": {"params": {"classifier.lr_head": {"type": "categorical", "choices": [1e-3, float("inf")]}}}},
     "search_space.params.classifier.lr_head=inf gives an invalid config"),
    ({"sampler": "grid", "trials": None,
      "search_space": {"params": {"eval.mask_threshold": {"type": "float", "low": 0.1, "high": 0.9, "step": 1e-10}}}},
     "configurations (at most 100000)"),
])
def test_bad_values_fail_at_load_not_after_the_search(tmp_path, fields, expected):
    raw = {**GOOD, **fields}
    with pytest.raises(ConfigError) as e:
        load_study(write(tmp_path / "s.yaml", raw))
    assert expected in "\n".join(e.value.problems)


# --- item 16: broken study files and databases are one line, exit 2 ----------------------------


BROKEN = {"empty": b"", "yaml": b"name: [\n", "utf8": b"name: st\n\xff\xfe: 1\n", "list": b"- a\n- b\n",
          "invalid": b"name: st\npipelines: [zz]\ntrials: 2\n"}


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize("verb", ["status", "resume", "run"])
def test_a_broken_study_yaml_is_one_line(tmp_path, capsys, kind, verb):
    study = tmp_path / "study"
    write(study / "study.yaml", BROKEN[kind])
    argv = (["study", "run", str(study / "study.yaml"), "--out", str(tmp_path / "out")] if verb == "run"
            else ["study", verb, str(study)])
    assert main(argv) == 2
    one_error_line(capsys, "study.yaml")
    assert not (tmp_path / "out").exists(), "nothing is created for a study that does not load"


@pytest.mark.parametrize("content", [b"", b"garbage" * 500, b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_corrupt_optuna_db_is_one_line(tmp_path, capsys, content):
    write(tmp_path / "study.yaml", GOOD)
    (tmp_path / "optuna.db").write_bytes(content)
    assert main(["study", "status", str(tmp_path)]) == 2
    one_error_line(capsys, "optuna.db")
    assert (tmp_path / "optuna.db").read_bytes() == content, "status never writes to the database"


def test_status_does_not_create_optuna_tables_in_a_foreign_sqlite_file(tmp_path, capsys):
    write(tmp_path / "study.yaml", GOOD)
    con = sqlite3.connect(tmp_path / "optuna.db")
    con.execute("CREATE TABLE mine (x INTEGER)")
    con.commit()
    con.close()
    before = (tmp_path / "optuna.db").read_bytes()
    assert main(["study", "status", str(tmp_path)]) == 2
    one_error_line(capsys, "optuna.db", "is it an Optuna database?")
    assert (tmp_path / "optuna.db").read_bytes() == before


@pytest.mark.parametrize("url", ["foo://", "sqlite:////nonexistent/dir/x.db", "not a url", "postgresql://"])
def test_a_bad_storage_url_is_one_line(tmp_path, capsys, url):
    write(tmp_path / "study.yaml", GOOD)
    assert main(["study", "status", str(tmp_path), "--storage", url]) == 2
    one_error_line(capsys, "cannot open the Optuna storage")


# --- item 10: the password of a storage URL -------------------------------------------------------


def test_redact_url_hides_passwords_only():
    from harness.tune.storage import redact_url, scrub

    assert redact_url("postgresql://me:s3cr%40t@db.example:5432/hp") == "postgresql://me:***@db.example:5432/hp"
    assert redact_url("mysql+pymysql://u:p@h/db?charset=utf8&password=x") == "mysql+pymysql://u:***@h/db?charset=utf8&password=***"
    assert redact_url("sqlite:////tmp/study/optuna.db") == "sqlite:////tmp/study/optuna.db"
    assert redact_url("postgresql://me@host/db") == "postgresql://me@host/db"
    assert scrub("could not connect as me with s3cr%40t to postgresql://me:s3cr%40t@h/db",
                 "postgresql://me:s3cr%40t@h/db") == "could not connect as me with *** to postgresql://me:***@h/db"


def test_a_password_is_never_printed(tmp_path, capsys):
    write(tmp_path / "study.yaml", GOOD)
    url = "postgresql://me:hunter2@127.0.0.1:9/hp"
    for argv in (["study", "status", str(tmp_path), "--storage", url],
                 ["study", "run", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "o"), "--storage", url]):
        assert main(argv) == 2
        err = one_error_line(capsys, "me:***@127.0.0.1")
        assert "hunter2" not in err


def storage_with_password(tmp_path):
    """A real SQLite storage whose URL carries a password (SQLite ignores the unknown URI parameter)."""
    from harness.tune.storage import open_storage

    return open_storage(f"sqlite:///file:{tmp_path / 'optuna.db'}?uri=true&password=hunter2")


def test_storage_and_searchers_pickle_without_the_password(tmp_path, monkeypatch):
    from harness.tune.bookkeeping import reconcile
    from harness.tune.storage import ENV
    from harness.tune.tuner import make_searcher

    storage = storage_with_password(tmp_path)
    spec = StudySpec.model_validate(GOOD)
    reconcile(spec, storage)
    searcher = make_searcher(spec, storage)
    searcher.save(str(tmp_path / "searcher.pkl"))
    for blob in (pickle.dumps(storage), pickle.dumps(searcher), (tmp_path / "searcher.pkl").read_bytes()):
        assert b"hunter2" not in blob and b"password=***" in blob
    with pytest.raises(ConfigError, match=f"set \\${ENV}"):
        pickle.loads(pickle.dumps(storage))
    monkeypatch.setenv(ENV, storage.url)
    assert pickle.loads(pickle.dumps(storage)).url == storage.url, "reconnects from the environment variable"
    assert optuna.get_all_study_names(pickle.loads(pickle.dumps(storage))) == ["st:a", "st:b"]


# --- item 2: quickstart --fresh deletes only a quickstart study ---------------------------------


@pytest.mark.parametrize("setup", ["user_files", "other_study", "file", "study_and_user_file"])
def test_quickstart_fresh_refuses_a_directory_it_did_not_make(tmp_path, capsys, setup):
    out = tmp_path / "out"
    if setup == "file":
        write(out, b"precious")
    else:
        out.mkdir()
        if setup == "user_files":
            write(out / "thesis.tex", b"precious")
        elif setup == "other_study":
            write(out / "study.yaml", {**GOOD, "name": "paper_table9"})
            write(out / "optuna.db", b"")
        else:
            write(out / "study.yaml", {**GOOD, "name": "quickstart"})
            write(out / "notes.txt", b"precious")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["quickstart", "--fresh", "--out", str(out), "--data", str(tmp_path / "data")]) == 2
    one_error_line(capsys, f"--out {out}", "--fresh deletes only")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "data").exists(), "nothing is synthesised either"


def test_quickstart_fresh_removes_its_own_study_only_after_the_study_loaded(tmp_path, monkeypatch, capsys):
    from harness.tune.paths import remove_study_dir

    out = tmp_path / "quick"
    write(out / "study.yaml", {**GOOD, "name": "quickstart"})
    write(out / "trials" / "t1" / "metrics.json", b"{}")
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "studies" / "quickstart.yaml", b"name: [broken\n")  # the study does not load
    assert main(["quickstart", "--fresh", "--out", str(out), "--data", str(tmp_path / "data")]) == 2
    one_error_line(capsys, "quickstart.yaml")
    assert (out / "trials" / "t1" / "metrics.json").exists(), "nothing deleted before the study loaded"
    remove_study_dir(out, "quickstart")
    assert not out.exists()
    crashed = tmp_path / "crashed"  # stopped before study.yaml was written
    write(crashed / "optuna.db", b"")
    (crashed / "ray").mkdir()
    remove_study_dir(crashed, "quickstart")
    assert not crashed.exists()


# --- item 24: a pipeline without a complete trial fails the study --------------------------------


def test_study_run_exits_1_naming_the_pipeline_without_a_complete_trial(tmp_path, monkeypatch, capsys):
    summary = {"study": "st", "storage": "sqlite:///x", "finished": 4, "final": [],
               "best": {"a": {"number": 0, "values": [0.8], "overrides": {}}},
               "states": {"a": {"COMPLETE": 2}, "b": {"FAIL": 2}},
               "errors": {"b": "harness.errors.TrainingError: segmenter epoch 1: loss is nan"}}
    monkeypatch.setattr("harness.tune.runner.run_study", lambda *a, **k: summary)
    write(tmp_path / "s.yaml", GOOD)
    assert main(["study", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o"), "--no-report"]) == 1
    captured = capsys.readouterr()
    assert "best a: trial 0" in captured.out
    assert captured.err.strip() == ("error: pipeline b: no complete trial (2 FAIL); first error: "
                                    "harness.errors.TrainingError: segmenter epoch 1: loss is nan; see `harness study "
                                    "status` and the trials' error.txt under STUDY_DIR/ray/.")


def test_study_run_on_ctrl_c_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("harness.tune.runner.run_study", interrupted)
    write(tmp_path / "s.yaml", GOOD)
    assert main(["study", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")]) == 130
    assert f"harness study resume {tmp_path / 'o'}" in capsys.readouterr().err


def test_a_pipeline_without_any_trial_is_named_too():
    from harness.tune.runner import failed_pipelines

    assert failed_pipelines({"best": {"a": {}}, "states": {}, "errors": {}}, ["a", "b"]) == [
        "pipeline b: no complete trial (no trials); see `harness study status` and the trials' error.txt under "
        "STUDY_DIR/ray/."]


def test_ablation_levels_are_checked_at_load(tmp_path):
    raw = {"name": "lv", "pipelines": ["b"], "base": {"b": "tiny-b"}, "sampler": "grid",
           "search_space": {"params": {"roi.margin": {"type": "categorical", "choices": [0.1, 0.2]}}},
           "final": {"mode": "levels", "levels": {"roi.margin": [float("inf"), 0.2], "roi.margn": [1]}}}
    with pytest.raises(ConfigError) as e:
        load_study(write(tmp_path / "s.yaml", raw))
    text = "\n".join(e.value.problems)
    assert 'final.levels.roi.margn: not an ablation axis of this study (its axes: roi.margin). Did you mean' in text
    assert "final run b-roi.margin=inf-seed1 gives an invalid config: roi.margin: Input should be a finite" in text
