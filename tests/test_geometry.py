"""Plane geometry helpers: polygon area, perimeter and the pixel-centre mask."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon as sk_polygon

from pipeline.geometry import polygon_area, polygon_mask, polygon_perimeter


def _circle(cx: float, cy: float, r: float, n: int = 400) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])


@pytest.mark.parametrize("r", [3.0, 5.0, 10.0, 20.0, 47.0])
def test_mask_holds_exactly_the_pixels_whose_centres_are_inside(r):
    cx, cy = 60.3, 61.7
    mask = polygon_mask(_circle(cx, cy, r, 2000), (130, 125))
    yy, xx = np.mgrid[:130, :125]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
    # A 2,000-gon lies within 1e-3 px of the circle: only centres that close to it may differ.
    near = np.abs(np.hypot(xx - cx, yy - cy) - r) < 2e-3
    assert not ((mask != inside) & ~near).any()
    # No outward bias: the count matches the area (cv2.fillPoly paints the touched pixels: +12 % at r = 10).
    assert abs(mask.sum() - np.pi * r * r) < 2.5 * r


def test_square_on_pixel_centres_has_its_area_in_pixels():
    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], dtype=float)
    mask = polygon_mask(square, (40, 40))
    assert mask.sum() == polygon_area(square) == 100
    assert mask[10:20, 10:20].all()  # half-open: the right and bottom sides' centres are outside
    assert polygon_perimeter(square) == 40


def test_random_polygons_agree_with_scikit_image_off_the_grid():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(3, 30))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(1, 30, n)
        cx, cy = rng.uniform(-10, 70, 2)
        pts = np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])
        rr, cc = sk_polygon(pts[:, 1], pts[:, 0], (60, 70))
        expected = np.zeros((60, 70), dtype=bool)
        expected[rr, cc] = True
        assert np.array_equal(polygon_mask(pts, (60, 70)), expected)


def test_degenerate_and_outside_polygons_give_empty_masks():
    assert not polygon_mask(np.array([[1.0, 1.0], [5.0, 5.0]]), (10, 10)).any()
    assert not polygon_mask(np.array([[0.0, 3.0], [8.0, 3.0], [4.0, 3.0]]), (10, 10)).any()
    assert not polygon_mask(_circle(-50, -50, 10), (10, 10)).any()
    assert polygon_mask(_circle(5, 5, 3), (0, 0)).shape == (0, 0)
