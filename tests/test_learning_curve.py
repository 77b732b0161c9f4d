"""The learning-curve fit of training/learning_curve.py (no networks needed)."""

from __future__ import annotations

import math

import pytest

from training.learning_curve import CurvePoint, log_fit


def _point(images: int, hit: float) -> CurvePoint:
    return CurvePoint(images, 1, 50, hit, 0.8, 0.2)


def test_gain_per_doubling_is_recovered_from_a_log_linear_curve():
    points = [_point(41, 0.50), _point(82, 0.60), _point(164, 0.70)]
    intercept, per_doubling = log_fit(points, "hit_rate")
    assert per_doubling == pytest.approx(0.10)
    assert intercept + per_doubling * math.log2(328) == pytest.approx(0.80)  # one more doubling


def test_a_flat_curve_has_no_gain():
    _, per_doubling = log_fit([_point(82, 0.7), _point(164, 0.7)], "hit_rate")
    assert per_doubling == pytest.approx(0.0, abs=1e-9)
