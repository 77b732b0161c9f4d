"""The nerve segmenter interface.

A segmenter proposes nerve contours in a frame. The classical segmenter is
the default; a learned model can be added behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["NerveSegmentation", "NerveSegmenter", "RimFeatures"]


@dataclass(frozen=True)
class RimFeatures:
    """What the segmenter saw around a candidate; drives the confidence.

    Attributes
    ----------
    rim_coverage : float
        Share of rays (0–1) on which a bright rim stands out from both the
        inside and the outside.
    rim_prominence : float
        Median rim height above the brighter of inside/outside, in units of
        the image's speckle SD.
    rim_prominence_low : float
        The same, 10th percentile over the rays: a rim must be bright all round.
    interior_to_surround : float
        Interior mean gray over the mean gray just outside the rim. An
        anechoic vessel is far below 1 and has no rim.
    rim_width_px : float
        Estimated true rim width (blur removed), in pixels along the rays.
    psf_fwhm_px : float
        Blur (point-spread) width estimated from the speckle, in pixels.
    """

    rim_coverage: float
    rim_prominence: float
    rim_prominence_low: float
    interior_to_surround: float
    rim_width_px: float
    psf_fwhm_px: float


@dataclass(frozen=True)
class NerveSegmentation:
    """One nerve found in a frame.

    Attributes
    ----------
    contour_px : ndarray of float, shape (N, 2)
        Closed contour (first point not repeated) along the inner border of
        the epineurial rim, ``(x, y)`` in frame pixel coordinates.
    ridge_px : ndarray of float, shape (N, 2)
        The rim's ridge (brightest line), frame pixels, for QA overlays.
    confidence : float
        0–1; how clearly a rimmed, non-anechoic structure was seen.
    features : RimFeatures
        The evidence behind the confidence.
    """

    contour_px: np.ndarray = field(repr=False)
    ridge_px: np.ndarray = field(repr=False)
    confidence: float
    features: RimFeatures


@runtime_checkable
class NerveSegmenter(Protocol):
    """Finds nerves in short-axis ultrasound frames."""

    #: Name and version written into the SR's Algorithm Identification.
    name: str

    @property
    def version(self) -> str: ...  # read-only in a protocol: the learned segmenters derive it

    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Nerves found in ``gray`` inside ``tissue_box``, best first; empty when none.

        Parameters
        ----------
        gray : ndarray of uint8, shape (rows, columns)
            The 8-bit B-mode frame.
        tissue_box : PixelBox
            Where the B-mode image is; nothing outside it is looked at.
        mm_per_px : float or None
            Pixel size, for the size priors; ``None`` when uncalibrated (a
            nominal size is then assumed and no mm value may be derived).
        exclude : ndarray of bool, optional
            Pixels that are not B-mode tissue (colour Doppler).
        """
        ...
