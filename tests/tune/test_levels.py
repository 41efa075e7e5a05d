"""The ablation plan: every level of every axis at the reference configuration, nothing run twice."""

from __future__ import annotations

from harness.tune.levels import PIPELINE_AXIS, REFERENCE, axes, level_label, plan, reference_level
from harness.tune.study import StudySpec


def spec(**fields) -> StudySpec:
    raw = {"name": "abl", "pipelines": ["b"], "base": {"b": "tiny-b"}, "sampler": "grid",
           "search_space": {"params": {"roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.1}}},
           "final": {"mode": "levels", "seeds": [1, 2]}}
    raw.update(fields)
    return StudySpec.model_validate(raw)


def test_one_axis_levels_share_the_reference_run():
    s = spec()
    runs = plan(s)
    (axis,) = axes(s)
    assert axis.levels == [0.0, 0.1, 0.2, 0.3, 0.4] and reference_level(s, axis, "b") == 0.2
    # 5 levels x 2 seeds; the level equal to the reference (0.2) is the reference run itself
    assert len(runs) == 10 and {r.seed for r in runs} == {1, 2}
    ref = [r for r in runs if r.variant == REFERENCE]
    assert len(ref) == 2 and all(r.overrides == {} for r in ref)
    assert {c["axis"] for r in ref for c in r.cells} == {REFERENCE, "roi.margin"}
    off = [r for r in runs if r.variant != REFERENCE]
    assert sorted({r.overrides["roi.margin"] for r in off}) == [0.0, 0.1, 0.3, 0.4]


def test_reference_not_on_the_grid_is_added_as_a_level():
    s = spec(search_space={"params": {"roi.margin": {"type": "float", "low": 0.3, "high": 0.5, "step": 0.1}}})
    levels = sorted({c["level"] for r in plan(s) for c in r.cells if c["axis"] == "roi.margin"})
    assert levels == [0.2, 0.3, 0.4, 0.5]


def test_two_axes_get_their_cross_product_and_pipeline_is_an_axis():
    # the paper presets' reference: vertical flips on, TTA views [identity, hflip, vflip]
    s = spec(pipelines=["a", "b"], base={"a": "paper-a", "b": "paper-b"}, search_space={"params": {
        "classifier.augment.vflip": {"type": "categorical", "choices": [True, False]},
        "eval.tta_views": {"type": "categorical", "choices": [["identity", "hflip", "vflip"], ["identity", "hflip"]]}}},
        final={"mode": "levels", "seeds": [1]})
    names = [a.name for a in axes(s)]
    assert names == ["classifier.augment.vflip", "eval.tta_views", PIPELINE_AXIS]
    runs = plan(s)
    cross = [r for r in runs if any("axis2" in c for c in r.cells)]
    assert len(cross) == 2  # per pipeline: vflip=false x views=[identity, hflip]
    assert all(r.overrides == {"classifier.augment.vflip": False, "eval.tta_views": ["identity", "hflip"]}
               for r in cross)
    assert len(runs) == 2 * (1 + 1 + 1 + 1)  # reference, vflip off, views without vflip, both


def test_simplex_axis_levels_are_vertices_and_equal_weights():
    s = spec(search_space={"simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focal",
                                                   "segmenter.loss.lovasz"]}]}, sampler="tpe", trials=2)
    (axis,) = axes(s)
    assert axis.name == "segmenter.loss" and len(axis.levels) == 4
    assert reference_level(s, axis, "b") == {"dice": 0.4, "focal": 0.3, "lovasz": 0.3}
    assert level_label(axis.levels[0]) == "dice=1,focal=0,lovasz=0"
    overrides = [r.overrides for r in plan(s) if r.variant != REFERENCE]
    assert {"segmenter.loss.dice": 1.0, "segmenter.loss.focal": 0.0, "segmenter.loss.lovasz": 0.0} in overrides
