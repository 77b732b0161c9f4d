"""Dense optical flow on a downsampled region of interest.

Speckle tracking needs no more than about 0.4 mm pixels; :class:`WorkGeometry`
crops the ROI and resamples it (area averaging) to that size so that OpenCV's
Farneback flow (polynomial expansion; sub-pixel accurate on small motions,
where DIS is not) costs a few milliseconds per frame whatever the scanner's
matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["WorkGeometry", "dense_flow", "work_geometry"]

#: Farneback settings: pyramid scale, levels, window (work px), iterations, polynomial size and sigma.
FARNEBACK: tuple[float, int, int, int, int, float] = (0.5, 2, 11, 3, 5, 1.1)


@dataclass(frozen=True)
class WorkGeometry:
    """How frame pixels map to the working image.

    Attributes
    ----------
    box : PixelBox
        The frame pixels analysed (inclusive).
    work_shape : tuple of int
        (rows, columns) of the working image.
    mm_per_work_px_x, mm_per_work_px_y : float
        Size of a working pixel (mm).
    """

    box: PixelBox
    work_shape: tuple[int, int]
    mm_per_work_px_x: float
    mm_per_work_px_y: float

    @property
    def scale_x(self) -> float:
        """Frame pixels per working pixel, across."""
        return self.box.width / self.work_shape[1]

    @property
    def scale_y(self) -> float:
        """Frame pixels per working pixel, down."""
        return self.box.height / self.work_shape[0]

    def to_work(self, gray: np.ndarray) -> np.ndarray:
        """The ROI of an 8-bit frame, resampled to the working size (uint8)."""
        b = self.box
        crop = gray[b.y0 : b.y1 + 1, b.x0 : b.x1 + 1]
        rows, cols = self.work_shape
        if crop.shape == (rows, cols):
            return np.ascontiguousarray(crop)
        return cv2.resize(crop, (cols, rows), interpolation=cv2.INTER_AREA)

    def to_frame_px(self, x_work: float, y_work: float) -> tuple[float, float]:
        """Working-image coordinates (pixel centres) to frame pixel coordinates (pixel centres)."""
        return (
            self.box.x0 + (x_work + 0.5) * self.scale_x - 0.5,
            self.box.y0 + (y_work + 0.5) * self.scale_y - 0.5,
        )


def work_geometry(
    box: PixelBox, mm_per_px_x: float, mm_per_px_y: float, *, work_mm_per_px: float, max_work_pixels: int,
    margin_mm: float = 0.0,
) -> WorkGeometry:
    """The working geometry of a ROI: ``box`` less ``margin_mm`` each side, resampled to ``work_mm_per_px``.

    Raises
    ------
    ValueError
        Non-positive pixel sizes, or a ROI too small to analyse (under 16
        working pixels either way).
    """
    if mm_per_px_x <= 0 or mm_per_px_y <= 0:
        raise ValueError("pixel sizes must be positive")
    mx, my = int(round(margin_mm / mm_per_px_x)), int(round(margin_mm / mm_per_px_y))
    if box.width > 2 * mx + 16 and box.height > 2 * my + 16:
        box = PixelBox(box.x0 + mx, box.y0 + my, box.x1 - mx, box.y1 - my)
    width_mm, height_mm = box.width * mm_per_px_x, box.height * mm_per_px_y
    step = max(work_mm_per_px, mm_per_px_x, mm_per_px_y, width_mm / max_work_pixels, height_mm / max_work_pixels)
    cols = max(1, min(box.width, int(round(width_mm / step))))
    rows = max(1, min(box.height, int(round(height_mm / step))))
    if cols < 16 or rows < 16:
        raise ValueError(f"the ROI ({width_mm:.1f} x {height_mm:.1f} mm) is too small to analyse motion in")
    return WorkGeometry(box, (rows, cols), width_mm / cols, height_mm / rows)


def dense_flow(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Farneback optical flow from ``previous`` to ``current`` (working pixels per frame pair).

    Returns
    -------
    ndarray of float32, shape (rows, columns, 2)
        (dx, dy) of each pixel of ``previous``.
    """
    pyr_scale, levels, window, iterations, poly_n, poly_sigma = FARNEBACK
    flow = np.zeros((*previous.shape[:2], 2), dtype=np.float32)
    return np.asarray(
        cv2.calcOpticalFlowFarneback(previous, current, flow, pyr_scale, levels, window, iterations, poly_n, poly_sigma, 0)
    )
