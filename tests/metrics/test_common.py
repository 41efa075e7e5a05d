"""Checks every registered metric must pass (in the style of scikit-learn's metrics/tests/test_common.py),
and the proof that adding a metric to run_metrics and Table 9 is one declaration plus its function.

NaN policy, checked below: a metric is NaN when a column it needs is missing, or in the cases its
``nan_policy`` names (e.g. no lesion image); per-image NaN values (HD95 of a missed lesion) are
ignored by the summaries; a metric whose policy is "never NaN" is finite on any valid input.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from harness import CLASS_NAMES
from harness.errors import ConfigError
from harness.metrics import (
    Metric,
    Sample,
    get_metric,
    list_metrics,
    metric_direction,
    register,
    run_metrics,
    unregister,
)
from harness.metrics.paired import get_paired_test
from harness.metrics.segmentation import per_image

ALL_METRICS = list_metrics()
IDS = [m.key for m in ALL_METRICS]


def random_predictions(n: int = 50, seed: int = 0, labels: np.ndarray | None = None) -> pd.DataFrame:
    """A predictions table with every column, mostly right, following the empty-mask convention."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n) if labels is None else np.asarray(labels)
    n = y.size
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    probs = rng.dirichlet(np.ones(3), n)
    gt_px = np.where(y < 2, rng.integers(50, 3000, n), 0)
    pred_px = np.where(rng.random(n) < 0.85, np.where(y < 2, rng.integers(1, 3000, n), 0), rng.integers(0, 2, n) * 40)
    both, none = (gt_px > 0) & (pred_px > 0), (gt_px == 0) & (pred_px == 0)
    dice = np.where(none, 1.0, np.where(both, rng.random(n), 0.0))
    nan = np.nan
    hd95 = np.where(none, 0.0, np.where(both, rng.gamma(2, 5, n), nan))
    return pd.DataFrame({
        "image_id": [f"img{i:03d}" for i in range(n)], "label": y, "pred_label": pred,
        **{f"prob_{c.lower()}": probs[:, k] for k, c in enumerate(CLASS_NAMES)},
        "dice": dice, "iou": dice / (2 - dice),
        "precision": np.where(none, 1.0, np.where(pred_px > 0, np.where(both, rng.random(n), 0.0), nan)),
        "recall": np.where(none, 1.0, np.where(gt_px > 0, np.where(both, rng.random(n), 0.0), nan)),
        "specificity": rng.uniform(0.9, 1.0, n), "hd95": hd95,
        "hd95_penalised": np.where(np.isnan(hd95), np.hypot(64, 80), hd95), "gt_pixels": gt_px, "pred_pixels": pred_px,
    })


def perfect_predictions(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.r_[0, 1, 2, rng.integers(0, 3, n - 3)]
    gt_px = np.where(y < 2, rng.integers(50, 3000, n), 0)
    return pd.DataFrame({
        "image_id": [f"img{i:03d}" for i in range(n)], "label": y, "pred_label": y,
        **{f"prob_{c.lower()}": (y == k).astype(float) for k, c in enumerate(CLASS_NAMES)},
        "dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0, "specificity": 1.0, "hd95": 0.0,
        "hd95_penalised": 0.0, "gt_pixels": gt_px, "pred_pixels": gt_px,
    })


def value(m: Metric, table: pd.DataFrame) -> float:
    return m.compute({c: table[c].to_numpy() for c in table.columns})


def in_bounds(m: Metric, v: float) -> bool:
    return m.bounds[0] - 1e-12 <= v <= m.bounds[1] + 1e-12


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_values_within_declared_bounds(m):
    for seed in range(4):
        v = value(m, random_predictions(seed=seed))
        assert math.isnan(v) or in_bounds(m, v), (m.key, v, m.bounds)
        assert not math.isnan(v), f"{m.key} is NaN on a table with every class and column"


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_perfect_prediction_gives_the_best_bound(m):
    if not math.isfinite(m.best):
        pytest.skip(f"{m.key}: no finite best value")
    assert value(m, perfect_predictions()) == pytest.approx(m.best)


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_invariant_to_image_order(m):
    table = random_predictions(seed=1)
    shuffled = table.sample(frac=1.0, random_state=3)
    assert value(m, shuffled) == pytest.approx(value(m, table), nan_ok=True)


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_batched_resamples_equal_one_at_a_time(m):
    """What the bootstrap relies on: row b of the batched call is the metric of resample b."""
    table = random_predictions(seed=2)
    columns = {c: table[c].to_numpy() for c in table.columns}
    idx = np.random.default_rng(0).integers(0, len(table), size=(6, len(table)))
    batched = np.asarray(m.fn(Sample(columns, idx)))
    assert batched.shape == (6,)
    for b in range(6):
        assert batched[b] == pytest.approx(value(m, table.iloc[idx[b]]), nan_ok=True)


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_missing_column_gives_nan(m):
    table = random_predictions(seed=0)
    for column in m.needs:
        assert math.isnan(value(m, table.drop(columns=column)))
        if column not in ("label", "pred_label"):  # run_metrics requires the label columns
            assert math.isnan(run_metrics(table.drop(columns=column))[m.key])


@pytest.mark.parametrize("labels", [np.full(12, 2), np.full(12, 1), np.r_[np.zeros(6), np.ones(6)].astype(int)],
                         ids=["all-normal", "all-malignant", "no-normal"])
@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_degenerate_inputs_follow_the_nan_policy(m, labels):
    assert m.nan_policy
    v = value(m, random_predictions(seed=4, labels=labels))
    if m.nan_policy.startswith("never NaN"):
        assert math.isfinite(v), m.key
    assert math.isnan(v) or in_bounds(m, v)


@pytest.mark.parametrize("m", ALL_METRICS, ids=IDS)
def test_declaration(m):
    assert metric_direction(m.key) == m.direction and get_metric(m.key) is m
    if m.test is not None:
        get_paired_test(m.test)
    assert m.in_table9 or not m.paper  # paper values only make sense in Table 9
    assert run_metrics(random_predictions(seed=0))[m.key] == pytest.approx(value(m, random_predictions(seed=0)))


def test_table9_rows_are_the_papers():
    rows = list_metrics(table9=True)
    assert [m.name for m in rows] == ["Balanced Accuracy", "Macro F1", "Cohen's Kappa", "Mean Dice", "Median Dice",
                                      "Dice >= 0.7", "Dice >= 0.8", "Dice >= 0.9", "Malignant Sensitivity",
                                      "Malignant Specificity"]
    assert len({m.order for m in rows}) == len(rows)
    assert get_metric("balanced_accuracy").paper == {"a": 0.8439, "b": 0.8040}
    assert get_metric("cohen_kappa").bounds == (-1.0, 1.0) and get_metric("hd95_mean").bounds[1] == math.inf
    # each row is tested on its own metric over patients; mean and median Dice by Wilcoxon on patients
    assert {m.key: m.test for m in rows if m.test != "permutation"} == {"dice_mean": "wilcoxon_dice",
                                                                       "dice_median": "wilcoxon_dice"}
    assert {get_paired_test(m.test).unit for m in rows} == {"patients"}


def test_unknown_names_and_bad_declarations():
    with pytest.raises(ConfigError, match='Did you mean "balanced_accuracy"'):
        get_metric("balanced_acuracy")
    with pytest.raises(ConfigError, match='Did you mean "wilcoxon_dice"'):
        get_paired_test("wilcoxon_dise")
    with pytest.raises(ValueError, match="registered twice"):
        register(get_metric("accuracy"))
    with pytest.raises(ConfigError) as e:
        Metric("x", "X", lambda s: s["dice"], direction="up", bounds=(1, 0), section="S", paper={"A": 2.0})
    assert len(e.value.problems) == 5  # every problem at once: direction, bounds, order, paper, nan_policy


def test_engine_validation_metrics_are_the_registered_ones():
    from harness.engine import fit as engine

    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 40)
    pred = np.where(rng.random(40) < 0.6, target, rng.integers(0, 3, 40))
    rows = np.stack([pred, target], axis=1)
    assert engine.balanced_accuracy_of(rows) == pytest.approx(balanced_accuracy_score(target, pred))
    assert engine.balanced_accuracy_of(rows) == value(get_metric("balanced_accuracy"),
                                                      pd.DataFrame({"label": target, "pred_label": pred}))
    logits = torch.randn(5, 3, 16, 16)
    y = torch.zeros(5, 16, 16, dtype=torch.long)
    y[:3, 4:10, 4:10] = 1
    logits[3] = torch.tensor([5.0, -5, -5])[:, None, None]  # image 3: correctly empty -> Dice 1
    rows = engine.dice_score(logits, y)
    pred_masks = (logits.argmax(1) > 0).numpy()
    expected = [per_image(pred_masks[i], (y[i] > 0).numpy())["dice"] for i in range(5)]
    assert rows[:, 0] == pytest.approx(expected) and rows[3, 0] == 1.0
    assert engine.mean_of(rows) == pytest.approx(np.mean(expected))


# ------------------------------------------------------------------------------------------------
# Adding a metric is one declaration plus its function


def _toy_error_rate(s: Sample) -> np.ndarray:
    return (s["label"] != s["pred_label"]).mean(axis=1)


@pytest.fixture
def toy_metric():
    m = register(Metric("toy_error_rate", "Toy Error Rate", _toy_error_rate, direction="min", section="Toy section",
                        order=99, paper={"a": 0.1}, test="permutation", nan_policy="never NaN"))
    yield m
    unregister("toy_error_rate")
    assert "toy_error_rate" not in {k.key for k in list_metrics()}


def test_decorator_form_registers_the_function():
    from harness.metrics import metric

    @metric(key="toy_n_images", name="Images", bounds=(0.0, float("inf")), needs=("label",), nan_policy="never NaN")
    def toy_n_images(s: Sample) -> np.ndarray:
        return np.full(s.n_resamples, float(s.n))

    try:
        assert get_metric("toy_n_images").fn is toy_n_images
        assert run_metrics(random_predictions(n=7))["toy_n_images"] == 7
        assert not get_metric("toy_n_images").in_table9
    finally:
        unregister("toy_n_images")


def test_a_declared_metric_reaches_run_metrics_bootstrap_and_table9(toy_metric, tmp_path):
    from harness.metrics.stats import bootstrap_ci
    from harness.report.export import table9_latex, table9_markdown
    from harness.report.html import table9_html
    from harness.report.loader import group_by_pipeline, load_sources
    from harness.report.table9 import build_table9
    from harness.testing.datasets import make_dataset
    from harness.testing.runs import make_run

    table = random_predictions(seed=0)
    m = run_metrics(table)
    assert m["toy_error_rate"] == pytest.approx(1 - m["accuracy"])
    ci = bootstrap_ci({c: table[c].to_numpy() for c in table.columns}, n_boot=50, keys=["toy_error_rate"])
    assert ci["toy_error_rate"][0] <= m["toy_error_rate"] <= ci["toy_error_rate"][1]
    assert metric_direction("toy_error_rate") == "min"

    images = make_dataset(tmp_path / "data", n=24, seed=0, size=(64, 48)).images
    runs = [make_run(tmp_path / p, images, p, seed=1, accuracy=acc) for p, acc in (("a", 0.9), ("b", 0.6))]
    src = load_sources(runs)
    t9, tests = build_table9(group_by_pipeline(src.runs), n_boot=50)
    toy = t9.set_index("metric").loc["Toy Error Rate"]
    assert t9["metric"].iloc[-1] == "Toy Error Rate"  # order 99: the last row
    assert toy["A"] == pytest.approx(src.runs[0].metrics["toy_error_rate"]) and toy["paper_A"] == 0.1
    assert math.isnan(toy["paper_B"]) and toy["test"] == "Permutation (patients)"
    from harness.metrics.paired import get_paired_test as strategy
    from harness.report.table9 import paired_data

    groups = group_by_pipeline(src.runs)
    direct = strategy("permutation").run(paired_data("A", "B", groups["A"], groups["B"]), [toy_metric], 50, 0)
    assert toy["p_value"] == pytest.approx(direct["toy_error_rate"]["p_value"])  # its own metric, its own test
    row = tests.set_index("metric").loc["Toy Error Rate"]
    assert row["difference"] == pytest.approx(toy["A"] - toy["B"]) and row["p_value"] == toy["p_value"]
    assert "*Toy section*" in table9_markdown(t9) and "Toy Error Rate" in table9_latex(t9)
    html = table9_html(t9)
    row = html[html.index("Toy Error Rate"):].split("</tr>")[0]
    best = "A" if toy["A"] < toy["B"] else "B"  # lower is better for this metric
    cells = row.split("<td")
    assert 'class="best"' in cells[1 if best == "A" else 3] and 'class="best"' not in cells[3 if best == "A" else 1]
