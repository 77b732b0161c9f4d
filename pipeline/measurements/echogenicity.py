"""Echogenicity (echo intensity): gray-value statistics inside a region of interest.

CONTRACT.md section 4: gray value of the 8-bit B-mode image (RGB/YBR
converted to luma) inside the ROI, never including burned-in text, calipers,
colour Doppler pixels or pixels outside the tissue region. Callers pass the
ROI mask; :func:`colour_pixel_mask` marks colour pixels to leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["EchogenicityStats", "colour_pixel_mask", "echogenicity_stats"]

#: A pixel whose channels differ by more than this is colour, not B-mode gray.
COLOUR_CHROMA_THRESHOLD = 12


@dataclass(frozen=True)
class EchogenicityStats:
    """Gray-level statistics (0–255, unit "1") over ``pixel_count`` pixels."""

    mean: float
    sd: float
    median: float
    pixel_count: int


def colour_pixel_mask(color: np.ndarray | None, *, threshold: int = COLOUR_CHROMA_THRESHOLD) -> np.ndarray | None:
    """Boolean mask of colour (Doppler) pixels of an RGB frame, or None for gray frames.

    A pixel is colour when its largest and smallest channel differ by more
    than ``threshold`` gray levels (JPEG chroma noise stays below it).
    """
    if color is None:
        return None
    r, g, b = cv2.split(color)
    # OpenCV per-channel max/min: far faster than numpy reductions over the last axis.
    spread = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    return spread > threshold


def echogenicity_stats(gray: np.ndarray, roi: np.ndarray, *, exclude: np.ndarray | None = None) -> EchogenicityStats:
    """Mean, SD (population) and median of ``gray`` inside ``roi`` and outside ``exclude``.

    Parameters
    ----------
    gray : ndarray of uint8, shape (rows, columns)
        The 8-bit B-mode (luma) image.
    roi : ndarray of bool, same shape
        The region of interest.
    exclude : ndarray of bool, same shape, optional
        Pixels to leave out (colour Doppler, annotations).

    Raises
    ------
    ValueError
        When no pixel is left to measure.
    """
    if roi.shape != gray.shape:
        raise ValueError(f"ROI shape {roi.shape} does not match image shape {gray.shape}")
    mask = roi if exclude is None else roi & ~exclude
    values = gray[mask]
    if values.size == 0:
        raise ValueError("no pixels left in the echogenicity ROI")
    values = values.astype(np.float64)
    return EchogenicityStats(
        mean=float(values.mean()),
        sd=float(values.std()),
        median=float(np.median(values)),
        pixel_count=int(values.size),
    )
