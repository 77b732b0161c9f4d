"""Crops that remember where they came from.

Analysis runs on a crop of the frame (usually the tissue region); results
must be reported in frame pixel coordinates so that the SR's SCOORDs land on
the right pixels. :class:`Crop` carries the offset both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["Crop"]


@dataclass(frozen=True)
class Crop:
    """A rectangular crop of a frame.

    Parameters
    ----------
    box : PixelBox
        The cropped frame pixels, bounds inclusive.

    Notes
    -----
    Points are ``(x, y)`` = (column, row) arrays of shape ``(N, 2)``.
    """

    box: PixelBox

    @property
    def offset(self) -> tuple[int, int]:
        """``(x, y)`` of the crop's top-left pixel in the frame."""
        return (self.box.x0, self.box.y0)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the cropped array."""
        return (self.box.height, self.box.width)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The cropped view of ``image`` (no copy); extra trailing axes are kept."""
        if image.shape[0] <= self.box.y1 or image.shape[1] <= self.box.x1:
            raise ValueError(f"crop {self.box.as_tuple()} does not fit an image of shape {image.shape[:2]}")
        return image[self.box.y0 : self.box.y1 + 1, self.box.x0 : self.box.x1 + 1]

    def to_frame(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Convert crop coordinates ``(x, y)`` to frame coordinates."""
        pts = np.asarray(points, dtype=float)
        return pts + np.array(self.offset, dtype=float)

    def from_frame(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Convert frame coordinates ``(x, y)`` to crop coordinates."""
        pts = np.asarray(points, dtype=float)
        return pts - np.array(self.offset, dtype=float)

    def mask_to_frame(self, mask: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
        """Place a crop-sized boolean mask into a frame-sized one."""
        if mask.shape != self.shape:
            raise ValueError(f"mask shape {mask.shape} is not the crop shape {self.shape}")
        full = np.zeros(frame_shape, dtype=bool)
        full[self.box.y0 : self.box.y1 + 1, self.box.x0 : self.box.x1 + 1] = mask
        return full

    def inset(self, pixels: int) -> Crop:
        """A crop ``pixels`` smaller on every side (at least one pixel is kept)."""
        x0, y0 = self.box.x0 + pixels, self.box.y0 + pixels
        x1, y1 = max(x0, self.box.x1 - pixels), max(y0, self.box.y1 - pixels)
        return Crop(PixelBox(x0, y0, x1, y1))
