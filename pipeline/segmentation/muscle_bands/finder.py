"""The muscle boundary finder interface, the classical stand-in and the refusal.

A :class:`BoundaryFinder` proposes the boundary bands of a long-axis frame
(the learned aponeurosis finder, :mod:`pipeline.segmentation.aponeurosis`);
:class:`ClassicalBandSearch` proposes nothing, so the measurement falls back
on the band search (:mod:`pipeline.segmentation.muscle_bands.search`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from pipeline.calibration import PixelBox
from pipeline.errors import MskusInputError


class NoMuscleBoundariesError(MskusInputError):
    """The frame shows no measurable pair of muscle boundaries (reason says which)."""

    code = "no_muscle_boundaries"


class BoundaryFinder(Protocol):
    """Proposes boundary bands (``pipeline.segmentation.aponeurosis.LayerBand``), shallowest first."""

    name: str
    version: str

    def find(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> Any: ...


class ClassicalBandSearch:
    """The classical band search as a :class:`BoundaryFinder` (it proposes nothing: ``find`` is ``None``).

    Parameters
    ----------
    fallback_note : str
        Why it stands in for the learned finder ('' when chosen), written into the SR.
    """

    name = "mskus-classical-bands"
    version = "1"

    def __init__(self, fallback_note: str = "") -> None:
        self.fallback_note = fallback_note

    def find(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> None:
        return None


def describe_boundaries(finder: object | None) -> str:
    """How a finder chooses the boundary bands, as the SR and tables state it."""
    if finder is None or isinstance(finder, ClassicalBandSearch):
        note = getattr(finder, "fallback_note", "")
        return f"classical band search ({note})" if note else "classical band search"
    return f"learned {getattr(finder, 'version', '')}".strip()
