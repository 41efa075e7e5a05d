"""The paper presets build their full-size models (EfficientNet-B7 300 px, U-Net++/B7 320 px, C's
U-Net++/B7 with a classification head) and run one optimisation step of every stage end to end."""

import json

import pytest

from harness.config import load_run_config
from harness.pipelines.run import run_trial

ONE_STEP = ["classifier.pretrained=false", "segmenter.pretrained=false", "runtime.threads=1",
            "classifier.optim.epochs=1", "segmenter.optim.epochs=1", "classifier.optim.batch_size=2",
            "segmenter.optim.batch_size=2", "classifier.optim.max_steps_per_epoch=1",
            "segmenter.optim.max_steps_per_epoch=1", "eval.tta=false", "eval.batch_size=4",
            "joint.pretrained=false", "joint.optim.epochs=1", "joint.optim.batch_size=2",
            "joint.optim.max_steps_per_epoch=1"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["paper-a", "paper-b", "paper-c"])
def test_paper_preset_one_step(preset, tmp_path, make_dataset):
    data = make_dataset(tmp_path / "ds", n=12, size=64, images_per_patient=1)
    cfg = load_run_config(preset, ONE_STEP)
    assert cfg.classifier.backbone == "efficientnet_b7" and cfg.segmenter.encoder == "efficientnet-b7"
    assert cfg.joint.encoder == "efficientnet-b7" and cfg.joint.image_size == 320
    res = run_trial(cfg, tmp_path / "run", data_dir=data)
    for name, rec in res.stages.items():
        assert rec["epochs"] == 1, name
    n_params = {"classifier3": 63e6, "roi_classifier": 63e6, "joint": 63e6}
    for name, rec in res.stages.items():
        if name in n_params:
            import torch

            state = torch.load(rec["checkpoint"], weights_only=True)
            learned = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
            assert learned > n_params[name]
    assert json.loads((res.run_dir / "metrics.json").read_text())["n_images"] > 0
