"""Search spaces: conditional parameters, simplex, grid, W&B export."""

import math

import optuna
import pytest

from harness.tune.space import (
    SearchSpace,
    grid_points,
    grid_size,
    normalise_raw,
    simplex_weights,
    suggest,
    to_wandb_parameters,
)

SPACE = SearchSpace.model_validate({
    "params": {
        "eval.tta": {"type": "categorical", "choices": [True, False]},
        "roi.margin": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.1, "when": {"pipeline": ["b"]}},
        "roi.lesion_min_pixels": {"type": "int", "low": 0, "high": 100, "step": 50, "when": {"pipeline": ["b"]}},
    },
})


def ask(space, pipelines, n=30, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(space, trial, pipelines))
        study.tell(trial, 0.0)
    return out


def test_conditional_params_only_for_their_pipeline():
    seen = ask(SPACE, ["a", "b"])
    assert {p for p, _ in seen} == {"a", "b"}
    for pipeline, params in seen:
        assert ("roi.margin" in params) == (pipeline == "b")
        assert "eval.tta" in params
        if pipeline == "b":
            assert params["roi.margin"] in (0.0, 0.1, 0.2, 0.3, 0.4)


def test_simplex_weights_sum_to_one():
    space = SearchSpace.model_validate({"simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focal",
                                                                "segmenter.loss.lovasz"]}]})
    for _, params in ask(space, ["a"], n=20):
        w = [params[f"segmenter.loss.{k}"] for k in ("dice", "focal", "lovasz")]
        assert math.isclose(sum(w), 1.0, abs_tol=1e-5) and min(w) >= 0


def test_simplex_weights_are_dirichlet_like():
    assert simplex_weights([math.exp(-1), math.exp(-1)]) == [0.5, 0.5]
    w = simplex_weights([0.5, 0.25, 0.125])  # -log: 0.69, 1.39, 2.08 -> 1/6, 2/6, 3/6
    assert w == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=1e-6)


def test_grid_honours_conditions():
    # A: tta(2) ; B: tta(2) x margin(5) x pixels(3)
    assert grid_size(SPACE, ["a", "b"]) == 2 + 2 * 5 * 3
    points = grid_points(SPACE, ["a", "b"])
    assert len(points) == 32 and len({(p, tuple(sorted(d.items()))) for p, d in points}) == 32
    assert all("roi.margin" not in d for p, d in points if p == "a")


def test_bad_spaces_are_rejected():
    with pytest.raises(ValueError, match="low must be <= high"):
        SearchSpace.model_validate({"params": {"x.y": {"type": "float", "low": 1, "high": 0}}})
    with pytest.raises(ValueError, match="log=true"):
        SearchSpace.model_validate({"params": {"x.y": {"type": "float", "low": 0, "high": 1, "log": True}}})
    with pytest.raises(ValueError):
        SearchSpace.model_validate({"params": {"x.y": {"type": "normal", "low": 0, "high": 1}}})
    with pytest.raises(ValueError, match="pipeline"):
        SearchSpace.model_validate({"params": {"pipeline": {"type": "categorical", "choices": ["a"]}}})


def test_wandb_parameters_and_raw_simplex_normalisation():
    space = SearchSpace.model_validate({
        "params": {"classifier.lr_head": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                   "eval.mask_threshold": {"type": "float", "low": 0.3, "high": 0.5, "step": 0.1},
                   "roi.lesion_min_pixels": {"type": "int", "low": 0, "high": 100}},
        "simplex": [{"fields": ["segmenter.loss.dice", "segmenter.loss.focal"]}]})
    params = to_wandb_parameters(space, ["a", "b"])
    assert params["pipeline"] == {"values": ["a", "b"]}
    assert params["classifier.lr_head"]["distribution"] == "log_uniform_values"
    assert params["eval.mask_threshold"] == {"values": [0.3, 0.4, 0.5]}
    assert params["roi.lesion_min_pixels"]["distribution"] == "int_uniform"
    raw = {"simplex.segmenter.loss.dice": 0.5, "simplex.segmenter.loss.focal": 0.25, "eval.tta": True}
    out = normalise_raw(raw, space)
    assert out["eval.tta"] is True and out["segmenter.loss.dice"] + out["segmenter.loss.focal"] == pytest.approx(1)


def test_a_new_distribution_is_one_class():
    """Every distribution answers the same four questions, so nothing outside space.py dispatches on type."""
    from harness.tune.space import CategoricalParam, FloatParam, IntParam

    for param in (FloatParam(type="float", low=0.1, high=0.3, step=0.1), IntParam(type="int", low=1, high=3),
                  CategoricalParam(type="categorical", choices=["x", "y"])):
        assert param.grid() and param.extremes() and param.wandb()
        assert all(v in param.grid() for v in param.extremes())


# --- bounds checked at load (issue 12 item 17) -------------------------------------------------


@pytest.mark.parametrize("param,expected", [
    ({"type": "int", "low": 0, "high": 64, "log": True}, "log=true needs low >= 1"),
    ({"type": "int", "low": 1, "high": 64, "step": 2, "log": True}, "log=true needs low >= 1 and step 1"),
    ({"type": "float", "low": 0.0, "high": float("inf")}, "finite number"),
    ({"type": "float", "low": float("nan"), "high": 1.0}, "finite number"),
])
def test_bad_bounds_are_refused_when_the_space_loads(param, expected):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=expected):
        SearchSpace.model_validate({"params": {"classifier.lr_head": param}})


def test_a_fine_step_is_fine_for_tpe_but_never_listed():
    """A step of 1e-10 (10**10 values) or an int over 10**12 values: searchable by TPE, never materialised
    as a list (a grid refuses it from its count, W&B gets a quantised distribution)."""
    from harness.tune.space import grid

    space = SearchSpace.model_validate({"params": {
        "eval.mask_threshold": {"type": "float", "low": 0.0, "high": 1.0, "step": 1e-10},
        "runtime.seed": {"type": "int", "low": 0, "high": 10**12, "step": 3}}})
    assert grid_size(space, ["a"]) == (10**10 + 1) * (10**12 // 3 + 1)
    with pytest.raises(ValueError, match="configurations"):
        grid(space, ["a"])
    with pytest.raises(ValueError, match="at most 1000000"):
        space.params["eval.mask_threshold"].grid()
    assert to_wandb_parameters(space, ["a"])["eval.mask_threshold"]["distribution"] == "q_uniform"
    assert to_wandb_parameters(space, ["a"])["runtime.seed"] == {"distribution": "q_uniform", "min": 0,
                                                                "max": 10**12, "q": 3}


def test_a_huge_grid_is_counted_not_built():
    """Six 1000-value axes: 10**18 configurations, refused from the counts (no list is materialised)."""
    import time

    from harness.tune.space import MAX_GRID, grid

    params = {f"p{k}": {"type": "int", "low": 0, "high": 999} for k in range(6)}
    space = SearchSpace.model_validate({"params": params})
    t0 = time.perf_counter()
    assert grid_size(space, ["a"]) == 1000**6
    with pytest.raises(ValueError, match=f"at most {MAX_GRID}"):
        grid(space, ["a"])
    assert time.perf_counter() - t0 < 1
