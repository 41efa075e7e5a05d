"""`--storage postgresql://...`: a study kept in a real PostgreSQL server (skipped without one)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries not installed (Debian package `postgresql`)")
    pytest.importorskip("psycopg2")
    as_user: list[str] = []
    # not under pytest's basetemp: /tmp/pytest-of-<user> is private, the server user could not enter it
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"

    def run(*cmd: str) -> None:
        done = subprocess.run(as_user + list(cmd), capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}"

    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres")
        run(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        try:
            run(_pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
        finally:
            subprocess.run(as_user + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_study_in_postgresql(postgres_url, make_dataset, tmp_path):
    import ray

    from harness.cli import main

    data = make_dataset(tmp_path / "ds", n=24, size=40, images_per_patient=2)
    study = tmp_path / "pg.yaml"
    study.write_text("""
name: pg
pipelines: [a]
base: {a: tiny-a}
overrides: {classifier.image_size: 32, segmenter.image_size: 32, classifier.optim.epochs: 1, segmenter.optim.epochs: 1}
search_space: {params: {eval.tta: {type: categorical, choices: [true, false]}}}
trials: 2
scheduler: {type: fifo}
final: {enabled: false}
wandb: {enabled: false}
""")
    ray.shutdown()
    try:
        code = main(["-q", "study", "run", str(study), "--data", str(data), "--out", str(tmp_path / "out"),
                     "--storage", postgres_url, "--no-report"])
    finally:
        ray.shutdown()
    assert code == 0
    assert not (tmp_path / "out" / "optuna.db").exists(), "the sqlite default was not used"
    trials = optuna.load_study(study_name="pg:a", storage=postgres_url).trials  # the study of pipeline a
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["pipeline"] for t in trials} == {"a"}
    assert main(["study", "status", str(tmp_path / "out"), "--storage", postgres_url]) == 0
