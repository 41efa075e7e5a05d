"""End-to-end metrics (paper 5.3, 6.3) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import end_to_end as E

# B  B  M  M  N  N    (true)
LABELS = np.array([0, 0, 1, 1, 2, 2])
PRED = np.array([0, 1, 1, 2, 2, 0])
DICE = np.array([0.9, 0.8, 0.3, 0.0, 1.0, 0.0])  # image 3: missed lesion; image 5: false lesion
PIXELS = np.array([100, 90, 40, 0, 0, 25])


def test_dice_variants():
    assert E.dice_all(DICE) == pytest.approx(3.0 / 6)
    assert E.dice_lesion(DICE, LABELS) == pytest.approx(2.0 / 4)
    assert E.dice_conditional(DICE, LABELS, PRED) == pytest.approx((0.9 + 0.3) / 2)


def test_missed_and_false_lesion_rates():
    assert E.missed_lesion_rate(LABELS, PIXELS) == pytest.approx(1 / 4)
    assert E.false_lesion_rate(LABELS, PIXELS) == pytest.approx(1 / 2)
    assert np.isnan(E.false_lesion_rate(np.array([0, 1]), np.array([1, 1])))
    assert np.isnan(E.missed_lesion_rate(np.array([2]), np.array([0])))


def test_attribution_per_image_and_table():
    per = E.attribute_errors(LABELS, PRED, DICE, good_dice=0.5)
    assert per["index"].tolist() == [0, 1, 2, 3]
    assert per["attribution"].tolist() == ["none", "classification", "segmentation", "both"]
    table = E.error_propagation_table(LABELS, PRED, DICE)
    counts = table.set_index("attribution")["n"].to_dict()
    assert counts == {"none": 1, "classification": 1, "segmentation": 1, "both": 1}
    assert table["fraction"].sum() == pytest.approx(1.0)
    assert table.set_index("attribution").loc["classification", "dice_mean"] == pytest.approx(0.8)


def test_permutation_invariance_and_errors():
    perm = np.array([5, 3, 1, 0, 4, 2])
    a = E.end_to_end_metrics(LABELS, PRED, DICE, PIXELS)
    b = E.end_to_end_metrics(LABELS[perm], PRED[perm], DICE[perm], PIXELS[perm])
    assert a == pytest.approx(b)
    with pytest.raises(ValueError, match="differ in length"):
        E.dice_lesion(DICE, LABELS[:3])
    with pytest.raises(ValueError, match="no images"):
        E.dice_all(np.array([]))
