"""Nerve cross-sectional area and shape from a traced contour (CONTRACT.md section 4).

All lengths in mm and areas in mm², from the frame calibration; anisotropic
pixels are handled by scaling x and y separately before any geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.calibration import FrameCalibration
from pipeline.geometry import polygon_area, polygon_mask, polygon_perimeter
from pipeline.measurements.echogenicity import EchogenicityStats, echogenicity_stats

__all__ = ["NerveMeasurement", "contour_mask", "measure_nerve"]


@dataclass(frozen=True)
class NerveMeasurement:
    """Measurements of one nerve in one frame.

    mm values are ``None`` when the frame is uncalibrated (echogenicity is
    still reported); ``area_px`` is always given for traceability.

    Attributes
    ----------
    contour_px : ndarray (N, 2)
        Inner border of the epineurial rim, ``(x, y)`` frame pixels, closed.
    area_px : float
        Polygon area in pixels².
    cross_sectional_area_mm2, perimeter_mm, major_axis_mm, minor_axis_mm : float or None
        CSA, perimeter, and the axes of the ellipse with the same second
        moments as the contour.
    flattening_ratio : float
        Major / minor axis (in mm where calibrated, else in pixels).
    echogenicity : EchogenicityStats
        Gray values (0–255) inside the contour, colour pixels excluded.
    confidence : float
        0–1, from the segmenter.
    """

    contour_px: np.ndarray = field(repr=False)
    area_px: float
    cross_sectional_area_mm2: float | None
    perimeter_mm: float | None
    major_axis_mm: float | None
    minor_axis_mm: float | None
    flattening_ratio: float
    echogenicity: EchogenicityStats
    confidence: float


def _moment_axes(points: np.ndarray) -> tuple[float, float]:
    """Full major/minor axes of the ellipse with the polygon's second moments."""
    x, y = points[:, 0], points[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = 0.5 * float(cross.sum())
    if abs(area) < 1e-12:
        return 0.0, 0.0
    cx = float(((x + xn) * cross).sum()) / (6 * area)
    cy = float(((y + yn) * cross).sum()) / (6 * area)
    ixx = float(((x * x + x * xn + xn * xn) * cross).sum()) / (12 * area) - cx * cx
    iyy = float(((y * y + y * yn + yn * yn) * cross).sum()) / (12 * area) - cy * cy
    ixy = float(((x * yn + 2 * x * y + 2 * xn * yn + xn * y) * cross).sum()) / (24 * area) - cx * cy
    eig = np.linalg.eigvalsh(np.array([[ixx, ixy], [ixy, iyy]]))
    eig = np.clip(eig, 0, None)
    # For an ellipse with semi-axes a, b: eigenvalues a²/4 and b²/4.
    return 4.0 * float(np.sqrt(eig[1])), 4.0 * float(np.sqrt(eig[0]))


def contour_mask(contour_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside the contour."""
    return polygon_mask(np.asarray(contour_px, dtype=np.float64), shape)


def measure_nerve(
    gray: np.ndarray,
    contour_px: np.ndarray,
    calibration: FrameCalibration,
    *,
    confidence: float,
    exclude: np.ndarray | None = None,
) -> NerveMeasurement:
    """Measure a nerve from its contour.

    Parameters
    ----------
    gray : ndarray of uint8
        The frame (8-bit luma).
    contour_px : ndarray (N, 2)
        Closed contour in frame pixels.
    calibration : FrameCalibration
        The frame's calibration. When calibrated, the contour must lie in one
        calibrated region (:meth:`FrameCalibration.check_measurement` raises
        :class:`~pipeline.errors.CalibrationError` otherwise).
    confidence : float
        Segmenter confidence, passed through.
    exclude : ndarray of bool, optional
        Colour Doppler pixels, left out of the echogenicity.
    """
    contour = np.asarray(contour_px, dtype=np.float64)
    mask = contour_mask(contour, gray.shape)
    echo = echogenicity_stats(gray, mask, exclude=exclude)
    area_px = polygon_area(contour)
    if calibration.is_calibrated:
        calibration.check_measurement(contour)
        assert calibration.mm_per_px_x is not None and calibration.mm_per_px_y is not None
        scaled = contour * np.array([calibration.mm_per_px_x, calibration.mm_per_px_y])
        major, minor = _moment_axes(scaled)
        return NerveMeasurement(
            contour_px=contour,
            area_px=area_px,
            cross_sectional_area_mm2=polygon_area(scaled),
            perimeter_mm=polygon_perimeter(scaled),
            major_axis_mm=major,
            minor_axis_mm=minor,
            flattening_ratio=major / minor if minor > 0 else float("inf"),
            echogenicity=echo,
            confidence=confidence,
        )
    major, minor = _moment_axes(contour)
    return NerveMeasurement(
        contour_px=contour,
        area_px=area_px,
        cross_sectional_area_mm2=None,
        perimeter_mm=None,
        major_axis_mm=None,
        minor_axis_mm=None,
        flattening_ratio=major / minor if minor > 0 else float("inf"),
        echogenicity=echo,
        confidence=confidence,
    )
