"""Grad-CAM: target layer choice, heatmaps, panels through a stand-in artifacts provider, skips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from harness.report import gradcam as G
from harness.report.build import build_report
from harness.report.loader import group_by_pipeline, load_sources
from harness.testing.artifacts import FakeArtifacts, add_fake_classifier


@pytest.fixture(scope="module")
def cam_runs(tmp_path_factory, fake_root):
    root = tmp_path_factory.mktemp("cam")
    runs = []
    for name in ("a_s1", "b_s1"):
        shutil.copytree(fake_root / name, root / name)
        add_fake_classifier(root / name, image_size=64)
        runs.append(root / name)
    return runs


def test_target_layer_prefers_conv_head_then_last_conv():
    import timm

    m = timm.create_model("test_efficientnet", pretrained=False, num_classes=3)
    assert G.target_layer(m) is m.conv_head
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 2))
    assert G.target_layer(seq) is seq[2]
    with pytest.raises(ValueError, match="no Conv2d"):
        G.target_layer(torch.nn.Linear(2, 2))


def test_cam_shape_range_and_overlay():
    import timm

    torch.manual_seed(0)
    m = timm.create_model("test_efficientnet", pretrained=False, num_classes=3).eval()
    x = np.random.default_rng(0).normal(size=(48, 48, 3)).astype(np.float32)
    cam = G.compute_cam(m, x, target=1)
    assert cam.shape == (48, 48) and cam.min() >= 0 and cam.max() <= 1
    over = G.overlay(np.zeros((30, 40), np.uint8), cam)
    assert over.shape == (30, 40, 3) and over.dtype == np.uint8


def test_pick_cases_prefers_one_correct_case_per_class(run_a):
    from harness.report.loader import load_run

    cases = G.pick_cases(load_run(run_a).predictions, n=4)
    assert len(cases) == 4 and set(cases["label"]) <= {0, 1}
    first_two = cases.iloc[:2]
    assert sorted(first_two["label"]) == [0, 1] and (first_two["label"] == first_two["pred_label"]).all()


def test_panels_for_both_pipelines(cam_runs):
    src = load_sources(cam_runs)
    figs, notes = G.gradcam_figures(group_by_pipeline(src.runs), FakeArtifacts(), n=2)
    assert set(figs) == {"A", "B"} and notes == []
    assert figs["B"]._suptitle.get_text().startswith("Pipeline B") and "ROI" in figs["B"]._suptitle.get_text()
    panels, kind = G.run_panels(src.runs[1], FakeArtifacts(), n=2)
    assert kind == "roi" and panels[0].display.shape == (64, 64)


def test_report_with_gradcam_and_skips(cam_runs, tmp_path, run_a):
    out = build_report(cam_runs, out_dir=tmp_path / "r", n_boot=20, provider=FakeArtifacts())
    assert (tmp_path / "r" / "figures" / "gradcam_A.png").exists()
    assert (tmp_path / "r" / "figures" / "gradcam_B.png").exists()
    assert "gradcam_A.png" in (tmp_path / "r" / "index.html").read_text() and not out.notes
    # no provider module yet / missing checkpoint: a note, not an error
    figs, notes = G.gradcam_figures(group_by_pipeline(load_sources([run_a]).runs), None)
    assert figs == {} and "not available" in notes[0]
    figs, notes = G.gradcam_figures(group_by_pipeline(load_sources([run_a]).runs), FakeArtifacts())
    assert figs == {} and "no checkpoint" in notes[0]
