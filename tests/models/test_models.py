"""Every model factory builds and runs on a tiny input; pretrained fails clearly offline."""

import pytest
import torch

from harness.config import ClassifierConfig, SegmenterConfig
from harness.errors import ConfigError
from harness.models import weights
from harness.models.classifier import PaperHead, classifier_param_groups, create_classifier
from harness.models.segmenter import create_segmenter

SMALL_BACKBONES = ["mobilenetv3_small_050", "test_efficientnet", "resnet10t"]
SMALL_ENCODERS = ["tu-mobilenetv3_small_050", "resnet18"]


@pytest.mark.parametrize("backbone", SMALL_BACKBONES)
@pytest.mark.parametrize("num_classes,in_chans", [(3, 3), (2, 1)])
def test_classifier_builds_with_paper_head(backbone, num_classes, in_chans):
    model = create_classifier(ClassifierConfig(backbone=backbone, pretrained=False), num_classes, in_chans)
    assert isinstance(model.head, PaperHead)
    kinds = [type(m).__name__ for m in model.head]
    assert kinds == ["BatchNorm1d", "Linear", "ReLU", "Dropout", "Linear"]
    assert model(torch.randn(2, in_chans, 64, 64)).shape == (2, num_classes)


def test_param_groups_split_backbone_and_head():
    cfg = ClassifierConfig(backbone="test_efficientnet", pretrained=False, lr_backbone=1e-5, lr_head=1e-3)
    model = create_classifier(cfg, 3)
    groups = classifier_param_groups(model, cfg)
    assert [g["lr"] for g in groups] == [1e-5, 1e-3]
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("encoder", SMALL_ENCODERS)
@pytest.mark.parametrize("classes", [1, 3])
def test_segmenter_builds(encoder, classes):
    model = create_segmenter(SegmenterConfig(encoder=encoder, pretrained=False, image_size=64), classes)
    assert type(model).__name__ == "UnetPlusPlus"
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, classes, 64, 64)


def test_unknown_names_say_did_you_mean():
    with pytest.raises(ConfigError, match='Did you mean "efficientnet_b7"'):
        create_classifier(ClassifierConfig(backbone="efficientnet_b77", pretrained=False), 3)
    with pytest.raises(ConfigError, match="segmenter.arch.*unetplusplus"):
        create_segmenter(SegmenterConfig(arch="unetplusplu", pretrained=False), 1)


def test_pretrained_offline_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    with pytest.raises(ConfigError) as err:
        create_classifier(ClassifierConfig(backbone="test_efficientnet", pretrained=True), 3)
    (line,) = err.value.problems
    assert "classifier.pretrained=true" in line and "pretrained=false" in line and "\n" not in line


def test_pretrained_from_local_weights_dir(tmp_path, monkeypatch):
    source = create_classifier(ClassifierConfig(backbone="test_efficientnet", pretrained=False), 3)
    torch.save(source.backbone.state_dict(), tmp_path / "test_efficientnet.pth")
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path))
    loaded = create_classifier(ClassifierConfig(backbone="test_efficientnet", pretrained=True), 3)
    for (k, a), b in zip(source.backbone.state_dict().items(), loaded.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_segmenter_decoder_channels_shrink_the_model():
    small = create_segmenter(SegmenterConfig(encoder="tu-mobilenetv3_small_050", pretrained=False, image_size=64,
                                             decoder_channels=(32, 32, 16, 16, 8)), 3)
    default = create_segmenter(SegmenterConfig(encoder="tu-mobilenetv3_small_050", pretrained=False, image_size=64), 3)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters()) / 3
    assert small(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
