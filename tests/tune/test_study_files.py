"""Every shipped study and search space validates; a bad study gives every problem and exit 2."""

from pathlib import Path

import pytest
import yaml

from harness import resources
from harness.cli import main
from harness.errors import ConfigError
from harness.tune.space import SearchSpace
from harness.tune.study import load_study
from harness.tune.sweep import wandb_sweep

ROOT = Path(__file__).resolve().parents[2]
STUDIES = resources.files(resources.STUDIES)
SPACES = resources.files(resources.SEARCH_SPACES)


def test_shipped_files_exist():
    """The package holds the files; the repository's top-level directories are links to them (one source)."""
    for kind in (resources.STUDIES, resources.SEARCH_SPACES):
        assert (ROOT / kind).resolve() == (ROOT / "harness" / "resources" / kind).resolve()
    names = {p.stem for p in STUDIES}
    assert {"quickstart", "paper_table9", "ablation_loss_weights", "ablation_roi_margin", "ablation_mask_threshold",
            "ablation_tta", "task_order"} <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_search_space_validates(path):
    SearchSpace.model_validate(yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_validates_and_exports_a_sweep(path):
    spec = load_study(path)
    assert spec.n_trials >= 1
    for p in spec.pipelines:
        spec.run_config(p, {})
    sweep = wandb_sweep(spec, path)
    assert sweep["metric"]["name"] == spec.objectives[0].metric and "pipeline" in sweep["parameters"]


def test_quickstart_is_sized_for_cpu():
    spec = load_study("quickstart")
    assert spec.n_trials >= 9 and spec.pipelines == ["a", "b", "c"]
    assert spec.base == {"a": "tiny-a", "b": "tiny-b", "c": "tiny-c"} and spec.data.test_fraction > 0


def test_task_order_study_has_all_three_answers():
    spec = load_study("task_order")
    assert spec.pipelines == ["a", "b", "c"] and spec.base["c"] == "paper-c"


def test_bad_study_reports_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "pipelines": ["a", "z"], "trials": 0, "sampler": "tpe", "objectives": [{"metric": "balanced_acc"}],
        "search_space": {"params": {"roi.margn": {"type": "float", "low": 0, "high": 1}}}}))
    with pytest.raises(ConfigError) as err:
        load_study(path)
    text = "\n".join(err.value.problems)
    assert "pipelines" in text and "trials" in text and 'Did you mean "balanced_accuracy"' in text
    assert len(err.value.problems) >= 3


def test_search_space_field_typos_are_caught_before_trials(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"pipelines": ["b"], "base": {"b": "tiny-b"}, "trials": 2,
                                    "search_space": {"params": {
                                        "roi.margn": {"type": "float", "low": 0, "high": 0.5},
                                        "roi.margin": {"type": "float", "low": 0, "high": 5}}}}))
    with pytest.raises(ConfigError) as err:
        load_study(path)
    text = "\n".join(err.value.problems)
    assert "roi.margn" in text and 'Did you mean "margin"' in text and "roi.margin=5" in text


def test_cli_bad_study_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("trials: -1\nsampler: annealing\n")
    assert main(["study", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") >= 2 and "Traceback" not in err
    assert main(["study", "status", str(tmp_path / "nothing")]) == 2


def test_simplex_field_typos_are_caught_before_trials(tmp_path):
    path = tmp_path / "simplex.yaml"
    path.write_text(yaml.safe_dump({"pipelines": ["a"], "base": {"a": "tiny-a"}, "trials": 2, "search_space": {
        "simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focall"]}]}}))
    with pytest.raises(ConfigError, match=r"simplex\[0\].*focall.*Did you mean \"focal\""):
        load_study(path)


def test_shipped_studies_resolve_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no studies/ or search_spaces/ here
    spec = load_study("quickstart")
    assert spec.name == "quickstart" and "eval.tta" in spec.search_space.params, "its search space by name too"
    assert main(["study", "wandb-sweep", "quickstart"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "quickstart"
    with pytest.raises(ConfigError, match='Did you mean "quickstart"'):
        load_study("quickstrat")


def test_a_users_files_win_over_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "search_spaces").mkdir()
    shipped = yaml.safe_load(resources.path(resources.STUDIES, "quickstart").read_text())
    (tmp_path / "studies" / "quickstart.yaml").write_text(yaml.safe_dump({**shipped, "trials": 3}))
    (tmp_path / "search_spaces" / "quickstart.yaml").write_text(yaml.safe_dump(
        {"params": {"eval.tta": {"type": "categorical", "choices": [False]}}}))
    spec = load_study("quickstart")
    assert spec.trials == 3 and list(spec.search_space.params) == ["eval.tta"]
