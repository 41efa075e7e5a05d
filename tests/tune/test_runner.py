"""The study harness on Ray (CPU only): a whole small study, fractional fake GPUs, a 2-node cluster,
a crashed trial retried, and a killed driver resumed. Ray tests share one xdist group."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from harness.tune.paths import StudyPaths
from harness.tune.runner import run_study
from harness.tune.study import StudySpec
from harness.tune.tracking import read_record, stable_run_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

FAST = {"classifier.image_size": 32, "segmenter.image_size": 32, "classifier.optim.epochs": 2,
        "segmenter.optim.epochs": 2, "classifier.optim.batch_size": 8, "segmenter.optim.batch_size": 8,
        "roi.lesion_min_pixels": 2, "eval.batch_size": 32}
EVAL_ONLY = {"params": {"eval.tta": {"type": "categorical", "choices": [True, False]},
                        "roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.2,
                                       "when": {"pipeline": ["b"]}}}}


def fast_spec(**fields) -> StudySpec:
    raw = {"name": "fast", "pipelines": ["a", "b"], "base": {"a": "tiny-a", "b": "tiny-b"}, "overrides": FAST,
           "search_space": EVAL_ONLY, "trials": 4, "scheduler": {"type": "fifo"}, "resources": {"cpu": 1},
           "final": {"seeds": [42, 7]}, "wandb": {"enabled": True, "mode": "offline"},
           "data": {"split": "study", "val_fraction": 0.25, "test_fraction": 0.25}}
    raw.update(fields)
    return StudySpec.model_validate(raw)


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_dataset):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds", n=32, size=40, images_per_patient=2)


@pytest.fixture(scope="module")
def study(data, tmp_path_factory):
    import ray

    ray.shutdown()
    out = tmp_path_factory.mktemp("study") / "fast"
    spec = fast_spec(scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2})
    summary = run_study(spec, out, data_dir=data, ray_init={"num_cpus": 2, "log_to_driver": False})
    ray.shutdown()
    return out, summary


def complete_trials(out: Path, name: str = "fast"):
    """COMPLETE trials of every pipeline, and the pipelines' Optuna studies (``<name>:<pipeline>``)."""
    url = StudyPaths(out).storage_url
    studies = {n.split(":", 1)[1]: optuna.load_study(study_name=n, storage=url)
               for n in optuna.get_all_study_names(url) if n.startswith(f"{name}:")}
    return [t for s in studies.values() for t in s.trials if t.state == optuna.trial.TrialState.COMPLETE], studies


def test_study_finishes_with_both_pipelines(study):
    out, summary = study
    trials, studies = complete_trials(out)
    assert summary["finished"] == 4 and len(trials) == 4
    assert summary["finished_per_pipeline"] == {"a": 2, "b": 2}, "the budget is split equally"
    assert {p: {t.user_attrs["pipeline"] for t in s.trials} for p, s in studies.items()} == {"a": {"a"}, "b": {"b"}}
    assert set(summary["best"]) == {"a", "b"}


def test_reports_are_stage_aligned_and_cached_trials_are_never_pruned(study):
    """ASHA is on (grace 1); evaluation-only trials replay their stages from the cache and all complete."""
    from harness.pipelines.registry import get_pipeline

    out, _ = study
    trials, _ = complete_trials(out)
    assert len(trials) == 4, "no trial was pruned"
    replayed = 0
    by_ray_id = {json.loads(p.read_text())["trial_id"]: p.parent for p in (out / "trials").glob("*/trial.json")}
    for results in (out / "ray").glob("study-*/*/result.json"):
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        if rows[0]["trial_id"] not in by_ray_id:  # a final run: one report, no epochs
            continue
        epochs = [r for r in rows if not r.get("final")]
        pipeline = yaml.safe_load((by_ray_id[rows[0]["trial_id"]] / "config.yaml").read_text())["pipeline"]
        stages = [s.name for s in get_pipeline(pipeline).stages]  # two stages of two epochs each (FAST)
        times = [r["stage_time"] for r in epochs]
        assert times == [2 * stages.index(r["stage"]) + r["epoch"] for r in epochs] == [1, 2, 3, 4]
        assert all(r["proxy"] == r["stage_metric"] for r in epochs), "balanced accuracy is maximised: proxy as is"
        replayed += all(r["replayed"] for r in epochs)
    assert replayed == 2, "the second trial of each pipeline replayed both stages from the cache"


def test_optuna_storage_holds_the_ray_trials_params(study):
    out, _ = study
    trials, studies = complete_trials(out)
    assert all(s.metric_names == ["balanced_accuracy"] for s in studies.values()), "named for optuna-dashboard"
    for t in trials:
        run_dir = StudyPaths(out).trial_of(t.user_attrs)
        assert run_dir == out / "trials" / f"{t.user_attrs['pipeline']}-{t.number:03d}", "named after the Optuna trial"
        info = json.loads((run_dir / "trial.json").read_text())
        assert info["trial_id"] == t.user_attrs["ray_trial_id"] and info["optuna_trial"] == t.number
        assert info["optuna_study"] == f"fast:{t.user_attrs['pipeline']}"
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["pipeline"] == t.user_attrs["pipeline"]
        assert config["eval"]["tta"] == t.params["eval.tta"] == t.user_attrs["overrides"]["eval.tta"]
        if t.user_attrs["pipeline"] == "b":
            assert config["roi"]["margin"] == pytest.approx(t.params["roi.margin"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert t.values[0] == pytest.approx(metrics["balanced_accuracy"])


def test_evaluation_only_trials_hit_the_stage_cache(study):
    out, _ = study
    trained = {"a": 0, "b": 0}
    for run_dir in (out / "trials").iterdir():
        pipeline = yaml.safe_load((run_dir / "config.yaml").read_text())["pipeline"]
        stages = [json.loads(p.read_text()) for p in (run_dir / "stages").glob("*.json")]
        trained[pipeline] += sum(not s["cached"] for s in stages)
    assert trained == {"a": 2, "b": 2}, "each pipeline trains its two stages once; the other trials reuse them"


def test_every_trial_is_an_offline_wandb_run(study):
    """Read back through the harness's own record (RUN_DIR/wandb.json), not W&B's private format."""
    out, _ = study
    trials, studies = complete_trials(out)
    uid = studies["a"].user_attrs["uid"]
    assert studies["b"].user_attrs["uid"] == uid, "one study instance, one id"
    offline = {d.name.rsplit("-", 1)[-1] for d in (out / "wandb" / "wandb").glob("offline-run-*")}
    for t in trials:
        run_dir = StudyPaths(out).trial_of(t.user_attrs)
        rec = read_record(run_dir)
        assert rec["id"] == stable_run_id(uid, f"fast:{t.user_attrs['pipeline']}", t.number), "stable across retries"
        assert rec["id"] in offline and Path(rec["run_dir"]).is_dir(), "the offline run W&B wrote"
        assert rec["name"] == run_dir.name and rec["group"] == "fast" and rec["job_type"] == "search"
        assert rec["tags"] == ["study:fast", f"pipeline:{t.user_attrs['pipeline']}"] and rec["state"] == "finished"
        assert rec["config"]["pipeline"] == t.user_attrs["pipeline"] and rec["config"]["optuna_trial"] == t.number
        assert rec["config"]["eval.tta"] == t.params["eval.tta"]
        assert rec["define_metric"] == {"balanced_accuracy": "max"}
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert rec["summary"]["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
        assert any(k.endswith("/val_metric") for row in rec["history"] for k in row) or all(
            json.loads(p.read_text())["cached"] for p in (run_dir / "stages").glob("*.json"))
    for final in (out / "final").iterdir():
        rec = read_record(final)
        assert rec["job_type"] == "final" and rec["id"] == stable_run_id(uid, "final", final.name)


def test_study_and_its_runs_have_manifests(study, data):
    out, _ = study
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "study" and m["study"] == "fast" and m["device"]["ray_cpus"] == 2
    assert m["data"]["dir"] == str(data.resolve()) and len(m["data"]["content_hash"]) == 16
    assert m["seeds"] == {"sampler_seed": 42, "final_seeds": [42, 7], "data.split_seed": 42}
    assert m["split"]["name"] == "study" and m["storage"].startswith("sqlite:///")
    trials, _ = complete_trials(out)
    trial = json.loads((StudyPaths(out).trial_of(trials[0].user_attrs) / "manifest.json").read_text())
    assert trial["command"] == m["command"], "a trial records the driver's command, not the Ray worker's"
    assert trial["provenance"]["optuna_trial"] == trials[0].number and trial["subsets"] == ["val"]
    assert trial["data"]["content_hash"] == m["data"]["content_hash"] and trial["split"] == m["split"]


def test_final_runs_report_on_test_and_build_table9(study):
    out, summary = study
    finals = sorted(Path(p).name for p in summary["final"])
    assert finals == ["a-seed42", "a-seed7", "b-seed42", "b-seed7"]
    for name in finals:
        test_metrics = json.loads((out / "final" / name / "metrics_test.json").read_text())
        assert test_metrics["subset"] == "test" and test_metrics["n_images"] > 0
    from harness.report.build import build_report

    result = build_report([out], gradcam=False)
    table = pd.read_csv(result.out_dir / "table9.csv")
    assert table.loc[table.metric == "Balanced Accuracy", ["A", "B"]].notna().all(axis=None)
    assert (result.out_dir / "index.html").is_file()


def test_one_experiment_on_two_warm_workers_finals_after_their_pipelines_search(study):
    """Search and final runs share the workers (imports paid once each); a pipeline's final runs start
    once its own last search trial ended; every run's clock is inside the recorded Tune session."""
    out, _ = study
    session = json.loads((out / "timings.json").read_text())["sessions"]
    assert len(session) == 1 and session[0]["slots"] == 2
    runs = {(kind, d.parent.name): json.loads(d.read_text())
            for kind in ("trials", "final") for d in (out / kind).glob("*/trial.json")}
    assert len(runs) == 8
    clocks = {k: r["clock"] for k, r in runs.items()}
    assert len({r["pid"] for r in runs.values()}) == 2 and sum(not c["warm"] for c in clocks.values()) == 2, \
        "two workers for all eight runs: only the first run of each imports the training stack"
    for c in clocks.values():
        assert c["outcome"] == "completed" and c["lock_wait_s"] < 1.0
        assert session[0]["started"] <= c["entered"] <= c["run_started"] <= c["run_ended"] <= c["ended"] \
            <= session[0]["ended"]
    for p in ("a", "b"):
        search_end = max(c["ended"] for (kind, name), c in clocks.items() if kind == "trials" and name[0] == p)
        assert all(c["entered"] >= search_end for (kind, name), c in clocks.items() if kind == "final" and name[0] == p)


def test_status_table(study, capsys):
    from harness.cli import main

    out, _ = study
    assert main(["study", "status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "COMPLETE 4" in text and "best a:" in text and "best b:" in text


def test_fractional_gpus_run_four_trials_at_once():
    """Fake GPUs: Ray started with num_gpus=2; the study's gpu=auto gives 0.5 per trial -> 4 at once."""
    import ray
    from ray import tune

    from harness.tune.tuner import cuda_available

    ray.shutdown()
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert cuda_available()
        resources = fast_spec().resources.per_trial(cuda_available())
        assert resources == {"cpu": 1.0, "gpu": 0.5}

        def trainable(config):
            start = time.time()
            time.sleep(2.0)
            tune.report({"start": start, "end": time.time(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")})

        grid = tune.Tuner(tune.with_resources(trainable, resources),
                          param_space={"i": tune.grid_search(list(range(4)))},
                          tune_config=tune.TuneConfig(), run_config=tune.RunConfig(verbose=0)).fit()
        rows = [r.metrics for r in grid]
        latest_start = max(r["start"] for r in rows)
        earliest_end = min(r["end"] for r in rows)
        assert latest_start < earliest_end, "all four trials overlapped in time"
        assert all(len(r["gpus"].split(",")) == 1 for r in rows), "each trial sees one (shared) GPU"
    finally:
        ray.shutdown()


def test_two_node_cluster_runs_trials_on_both_nodes(data, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        spec = fast_spec(pipelines=["a"], trials=2, final={"enabled": False})
        run_study(spec, tmp_path / "s", data_dir=data, address=cluster.address)
        infos = [json.loads(p.read_text()) for p in (tmp_path / "s" / "trials").glob("*/trial.json")]
        assert len(infos) == 2
        assert {i["node_id"] for i in infos} == {n.node_id for n in nodes}
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ray_address_in_the_environment_joins_that_cluster(data, tmp_path, monkeypatch, capsys):
    """`ray job submit -- harness study run ...` sets RAY_ADDRESS for the driver: the study must run there."""
    import ray
    from ray.cluster_utils import Cluster

    from harness.cli import main

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        spec = fast_spec(pipelines=["a"], trials=2, final={"enabled": False}, wandb={"enabled": False})
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(json.loads(spec.model_dump_json())))
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        assert main(["study", "run", str(path), "--data", str(data), "--out", str(tmp_path / "s"), "--no-report"]) == 0
        infos = [json.loads(p.read_text()) for p in (tmp_path / "s" / "trials").glob("*/trial.json")]
        assert {i["node_id"] for i in infos} == {n.node_id for n in nodes}, "trials ran on the cluster's nodes"
        assert json.loads((tmp_path / "s" / "manifest.json").read_text())["device"]["ray_nodes"] == 3
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_dashboard_flag(tmp_path, capsys):
    """--dashboard starts Ray's dashboard with the local Ray, or says in one line what it needs."""
    import importlib.util

    import ray

    from harness.errors import ConfigError
    from harness.tune.tuner import init_ray

    ray.shutdown()
    try:
        if importlib.util.find_spec("aiohttp") is None:  # minimal ray, no ray[default]
            with pytest.raises(ConfigError, match=r"pip install 'harness\[dashboard\]'"):
                init_ray(None, {"num_cpus": 1}, dashboard=True)
        else:
            init_ray(None, {"num_cpus": 1}, dashboard=True)
            assert ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_crashed_trial_is_retried_and_resumes_its_stage(data, tmp_path):
    import ray

    from harness.tune.testing import CrashOnce

    ray.shutdown()
    marker = tmp_path / "crashed"
    spec = fast_spec(pipelines=["a"], trials=1, max_failures=1, final={"enabled": False},
                     overrides={**FAST, "classifier.optim.epochs": 3})
    run_study(spec, tmp_path / "s", data_dir=data, ray_init={"num_cpus": 1, "log_to_driver": False},
              epoch_hooks=[CrashOnce(marker)])
    ray.shutdown()
    assert marker.read_text() == "classifier3 epoch 1", "the worker died after the first epoch"
    trials, _ = complete_trials(tmp_path / "s")
    assert len(trials) == 1
    run_dir = StudyPaths(tmp_path / "s").trial_of(trials[0].user_attrs)
    stage = json.loads((run_dir / "stages" / "classifier3.json").read_text())
    assert [h["epoch"] for h in stage["history"]] == [1, 2, 3], "the retry resumed from the saved epoch"
    attempts = sorted((tmp_path / "s" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2 and len({d.name.rsplit("-", 1)[-1] for d in attempts}) == 1, \
        "the retry continued the same W&B run id (resume='allow')"
    assert read_record(run_dir)["id"] == attempts[0].name.rsplit("-", 1)[-1]


def test_killed_driver_resumes_to_the_requested_count_without_duplicates(data, tmp_path):
    import ray

    ray.shutdown()
    spec_path = tmp_path / "study.yaml"
    spec = fast_spec(trials=4, max_concurrent=1, final={"enabled": False},
                     overrides={**FAST, "classifier.optim.epochs": 3, "segmenter.optim.epochs": 3},
                     search_space={"params": {"eval.mask_threshold": {"type": "float", "low": 0.3, "high": 0.7}}})
    spec_path.write_text(yaml.safe_dump(json.loads(spec.model_dump_json())))
    out = tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "harness", "-q", "study", "run", str(spec_path), "--data", str(data),
           "--out", str(out), "--no-report"]
    log = tmp_path / "driver.log"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            if (out / "optuna.db").exists():
                try:
                    # after the first: later trials of this eval-only space reuse cached stages and outputs
                    # (about a second each), so waiting for two could find all four finished
                    if len(complete_trials(out)[0]) >= 1:
                        break
                except (KeyError, Exception):  # noqa: BLE001 - the study may not exist yet
                    continue
        else:
            pytest.fail("the study did not finish a trial in time; driver log:\n" + log.read_text()[-3000:])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before, _ = complete_trials(out)
    assert len(before) < 4
    done = subprocess.run([sys.executable, "-m", "harness", "-q", "study", "resume", str(out), "--data", str(data),
                           "--no-report"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    after, studies = complete_trials(out)
    assert len(after) == 4
    assert Counter(t.user_attrs["pipeline"] for t in after) == {"a": 2, "b": 2}, "the resume keeps the split"
    kept = {(t.user_attrs["pipeline"], t.number) for t in before}  # numbers count within a pipeline's study
    assert kept <= {(t.user_attrs["pipeline"], t.number) for t in after}, "finished trials are kept, not re-run"
    ids = [t.user_attrs["ray_trial_id"] for t in after]
    assert len(set(ids)) == 4
    interrupted = [(p, t.number) for p, s in studies.items() for t in s.trials
                   if t.user_attrs.get("interrupted") and t.params]  # one killed before drawing is not re-queued
    retried = [t for t in after if "retry_of" in t.user_attrs]
    assert sorted(interrupted) == sorted((t.user_attrs["pipeline"], t.user_attrs["retry_of"]) for t in retried)
    uid = studies["a"].user_attrs["uid"]
    for t in retried:
        original = studies[t.user_attrs["pipeline"]].trials[t.user_attrs["retry_of"]]
        assert t.params == original.params, "an interrupted trial runs again with the same parameters"
        record = read_record(StudyPaths(out).trial_of(t.user_attrs))
        assert record["id"] == stable_run_id(uid, f"fast:{t.user_attrs['pipeline']}", original.number), \
            "the retry continues the interrupted trial's W&B run"


def test_study_on_a_dataset_with_other_column_names(make_dataset, tmp_path):
    import ray

    from harness.cli import main

    data = make_dataset(tmp_path / "ds", n=24, size=40, columns={"label": "diagnosis", "patient_id": "case"})
    spec = fast_spec(pipelines=["b"], trials=1, final={"enabled": False}, wandb={"enabled": False})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(json.loads(spec.model_dump_json())))
    ray.shutdown()
    try:
        code = main(["-q", "study", "run", str(path), "--data", str(data), "--out", str(tmp_path / "out"),
                     "--columns", "label=diagnosis,patient_id=case", "--no-report"])
    finally:
        ray.shutdown()
    assert code == 0
    assert len(complete_trials(tmp_path / "out")[0]) == 1
