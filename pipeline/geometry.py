"""Plane geometry on point arrays ``(N, 2)`` of ``(x, y)``."""

from __future__ import annotations

import numpy as np

__all__ = ["dice_coefficient", "polygon_area", "polygon_mask", "polygon_perimeter"]


def polygon_area(points: np.ndarray) -> float:
    """Area of a simple closed polygon (shoelace), in squared input units."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_perimeter(points: np.ndarray) -> float:
    """Length of a closed polygon, in input units."""
    return float(np.sum(np.hypot(*(np.roll(points, -1, axis=0) - points).T)))


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside a closed polygon.

    Pixel ``(row, col)`` has its centre at ``(x, y) = (col, row)``. A scanline
    fill at each row centre (even-odd rule, half-open in ``y`` and ``x``), so a
    pixel belongs to the mask exactly when its centre is inside: the mask's
    pixel count matches the polygon's area without the outward half-pixel
    bias of rasterisers that also paint the pixels the outline touches
    (``cv2.fillPoly``: +12 % on a 10 px radius circle).

    Parameters
    ----------
    points : ndarray (N, 2)
        Vertices ``(x, y)`` in pixels, sub-pixel allowed; the last joins the first.
    shape : tuple of int
        ``(rows, cols)`` of the mask.
    """
    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3 or rows == 0 or cols == 0:
        return mask
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    keep = y0 != y1
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    # Rows whose centre y satisfies min(y0, y1) <= y < max(y0, y1), inside the mask.
    first = np.clip(np.ceil(np.minimum(y0, y1)), 0, rows).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1)), 0, rows).astype(np.int64)
    counts = np.maximum(stop - first, 0)
    if not counts.sum():
        return mask
    edge = np.repeat(np.arange(len(first)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    y = (first[edge] + offsets).astype(np.int64)
    x = x0[edge] + (y - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((x, y))
    y, x = y[order], x[order]
    # Each row has an even number of crossings: fill between pairs (columns c with xa <= c < xb).
    row, xa, xb = y[0::2], x[0::2], x[1::2]
    start = np.clip(np.ceil(xa), 0, cols).astype(np.int64)
    end = np.clip(np.ceil(xb), 0, cols).astype(np.int64)
    span = end > start
    if not span.any():
        return mask
    row, start, end = row[span], start[span], end[span]
    # Work in the polygon's bounding box only: a nerve is a small part of the frame.
    r0, r1 = int(row.min()), int(row.max()) + 1
    c0, c1 = int(start.min()), int(end.max())
    runs = np.zeros((r1 - r0, c1 - c0 + 1), dtype=np.int32)
    np.add.at(runs, (row - r0, start - c0), 1)
    np.add.at(runs, (row - r0, end - c0), -1)
    mask[r0:r1, c0:c1] = np.cumsum(runs[:, :-1], axis=1) > 0
    return mask


def dice_coefficient(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2 |a & b| / (|a| + |b|)`` of two boolean masks of one shape (0 when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else 0.0
