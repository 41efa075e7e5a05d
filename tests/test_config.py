"""Run configs: presets validate, overrides, and every problem reported at once."""

import pytest

from harness.config import RunConfig, bundled_presets, load_run_config, preset_names
from harness.errors import ConfigError


@pytest.mark.parametrize("name", bundled_presets())
def test_every_preset_validates(name):
    from harness.pipelines.registry import registered_presets

    cfg = load_run_config(name)
    assert cfg.name == name and cfg.pipeline == registered_presets()[name][0] == name[-1]


def test_presets_present():
    assert {"paper-a", "paper-b", "paper-c", "tiny-a", "tiny-b", "tiny-c"} <= set(preset_names())


def test_defaults_are_the_papers_values():
    cfg = RunConfig()
    assert cfg.pipeline == "a"
    assert (cfg.classifier.backbone, cfg.classifier.image_size) == ("efficientnet_b7", 300)
    assert (cfg.classifier.lr_backbone, cfg.classifier.lr_head, cfg.classifier.optim.weight_decay) == (1e-5, 1e-3, 1e-2)
    assert (cfg.segmenter.arch, cfg.segmenter.image_size, cfg.segmenter.lr) == ("unetplusplus", 320, 1e-4)
    assert (cfg.segmenter.loss.dice, cfg.segmenter.loss.focal, cfg.segmenter.loss.lovasz) == (0.4, 0.3, 0.3)
    assert cfg.classifier.optim.patience == 15 and cfg.classifier.optim.epochs == 100
    assert cfg.roi.margin == 0.2 and cfg.roi.lesion_min_pixels == 50 and cfg.roi.train_crops == "predicted"
    assert cfg.eval.mask_threshold == 0.5 and cfg.eval.tta and cfg.eval.tta_views == ("identity", "hflip", "vflip")
    assert cfg.classifier.augment.vflip and cfg.segmenter.sampler == "weighted"
    assert load_run_config("paper-b").classifier.lr_backbone == 1e-4  # section 3.2.2: single LR 1e-4


def test_dotted_overrides_with_yaml_values():
    cfg = load_run_config("tiny-b", ["roi.margin=0.35", "eval.tta=false", "eval.tta_views=[identity, hflip]",
                                     "segmenter.loss.dice=1"])
    assert cfg.roi.margin == 0.35 and cfg.eval.tta is False and cfg.eval.tta_views == ("identity", "hflip")
    assert cfg.segmenter.loss.dice == 1.0


def test_all_problems_reported_together_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        load_run_config("tiny-a", ["roi.margn=0.3", "roi.lesion_min_pixels=-1", "classifier.optim.epochs=0",
                                   "pipeline=z"])
    lines = err.value.problems
    assert len(lines) == 4
    text = "\n".join(lines)
    assert 'roi.margn: unknown field' in text and 'Did you mean "margin"' in text
    assert "roi.lesion_min_pixels" in text and "-1" in text
    assert "classifier.optim.epochs" in text and "pipeline" in text
    assert all("preset tiny-a + --set" in line for line in lines)


def test_yaml_file_and_errors_name_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("pipeline: b\nroi:\n  margin: 1.5\n")
    assert load_run_config(path, ["roi.margin=0.3"]).roi.margin == 0.3
    with pytest.raises(ConfigError, match=r"roi.margin.*x.yaml"):
        load_run_config(path, ["roi.margin=5"])
    (tmp_path / "bad.yaml").write_text("pipeline: [a\n")
    with pytest.raises(ConfigError, match="bad.yaml:.*not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")


def test_unknown_preset_did_you_mean():
    with pytest.raises(ConfigError, match='Did you mean "tiny-a"'):
        load_run_config("tiny_a")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        load_run_config("tiny-a", ["roi.margin"])


def test_mapping_overrides_merge_and_do_not_alias():
    from harness.config import apply_overrides

    raw = {"data": {"split": "x", "columns": {"label": "dx"}}}
    value = {"columns": {"patient_id": "case"}}
    out = apply_overrides(raw, {"data": value, "data.val_fraction": 0.3})
    assert out["data"] == {"split": "x", "columns": {"label": "dx", "patient_id": "case"}, "val_fraction": 0.3}
    assert value == {"columns": {"patient_id": "case"}} and raw["data"]["columns"] == {"label": "dx"}


# --- hostile values (issue 12 items 5 and 17): refused at load, before anything trains ----------


@pytest.mark.parametrize("name", ["", "../x", "/abs", "a/b", "..", ".hidden", "x" * 129, "a b", "$x$", "-rf", "a\n"])
def test_a_name_that_is_not_one_plain_directory_is_refused(name):
    with pytest.raises(ConfigError, match="name: must be a plain name"):
        load_run_config("tiny-a", {"name": name})


def test_plain_names_pass():
    for name in ("tiny-a", "run_1", "a-roi.margin=0.3-seed7", "B2+tta"):
        assert load_run_config("tiny-a", {"name": name}).name == name


@pytest.mark.parametrize("key,value,expected", [
    ("runtime.seed", -1, "greater than or equal to 0"),
    ("runtime.seed", 2**32, "less than or equal to 4294967295"),
    ("runtime.seed", 2**64, "less than or equal to 4294967295"),
    ("data.split_seed", -3, "greater than or equal to 0"),
    ("classifier.lr_head", float("inf"), "finite number"),
    ("segmenter.lr", float("nan"), "finite number"),
    ("segmenter.loss.dice", float("inf"), "finite number"),
    ("joint.cls_weight", float("inf"), "finite number"),
    ("classifier.optim.weight_decay", float("inf"), "finite number"),
    ("roi.margin", float("nan"), "finite number"),
])
def test_non_finite_floats_and_out_of_range_seeds_are_refused(key, value, expected):
    with pytest.raises(ConfigError) as e:
        load_run_config("tiny-b", {key: value})
    assert len(e.value.problems) == 1 and key in e.value.problems[0] and expected in e.value.problems[0]


def test_yaml_inf_from_the_command_line_is_refused():
    with pytest.raises(ConfigError, match="classifier.lr_head: Input should be a finite number"):
        load_run_config("tiny-a", ["classifier.lr_head=.inf"])


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: x\n\xff: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not UTF-8 text \(byte 0xff"):
        load_run_config(path)
