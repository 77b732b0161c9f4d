"""Plane geometry on point arrays ``(N, 2)`` of ``(x, y)``."""

from __future__ import annotations

import numpy as np

__all__ = ["polygon_area", "polygon_perimeter"]


def polygon_area(points: np.ndarray) -> float:
    """Area of a simple closed polygon (shoelace), in squared input units."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_perimeter(points: np.ndarray) -> float:
    """Length of a closed polygon, in input units."""
    return float(np.sum(np.hypot(*(np.roll(points, -1, axis=0) - points).T)))
