"""Input preparation of the nerve network (shared with training so both see the same thing).

The tissue region is letterboxed into a square of ``input_size`` pixels (aspect
kept, black padding, :func:`cv2.resize` with ``INTER_AREA``) and standardised
with the mean and SD of the tissue pixels (:func:`normalize_input`); pixels
left out of the analysis (colour Doppler, annotations) are filled with the
median of the rest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.inpaint import inpaint_missing

__all__ = ["Letterbox", "MIN_INPUT_SD", "letterbox", "normalize_input"]

#: Lower bound of the SD used to standardise the input (gray levels / 255).
MIN_INPUT_SD = 0.02


@dataclass(frozen=True)
class Letterbox:
    """Where a ``(h, w)`` crop sits in the square network input.

    The crop is resized by ``scale`` to ``(rows, cols)`` and placed with its
    top-left pixel at ``(x0, y0)`` of the ``size`` x ``size`` input.
    """

    size: int
    scale: float
    x0: int
    y0: int
    cols: int
    rows: int

    @classmethod
    def fit(cls, shape: tuple[int, int], size: int) -> Letterbox:
        h, w = shape
        scale = size / max(h, w)
        cols = max(1, min(size, int(round(w * scale))))
        rows = max(1, min(size, int(round(h * scale))))
        return cls(size=size, scale=scale, x0=(size - cols) // 2, y0=(size - rows) // 2, cols=cols, rows=rows)

    def valid_mask(self) -> np.ndarray:
        mask = np.zeros((self.size, self.size), dtype=bool)
        mask[self.y0 : self.y0 + self.rows, self.x0 : self.x0 + self.cols] = True
        return mask


def letterbox(gray: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``gray`` (aspect kept, ``INTER_AREA``) into a black ``size`` x ``size`` square."""
    box = Letterbox.fit(gray.shape[:2], size)
    out = np.zeros((size, size), dtype=np.float32)
    resized = cv2.resize(gray.astype(np.float32), (box.cols, box.rows), interpolation=cv2.INTER_AREA)
    out[box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols] = resized
    return out, box


def normalize_input(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Standardise a gray image (0–255) with the mean and SD of its ``valid`` pixels.

    Padding (outside ``valid``) is set to what black would become, as the
    letterboxing of real scanner crops leaves black margins.
    """
    img = image.astype(np.float32) / 255.0
    pixels = img[valid] if valid.any() else img.ravel()
    mean = float(pixels.mean())
    sd = max(float(pixels.std()), MIN_INPUT_SD)
    out = (img - mean) / sd
    out[~valid] = (0.0 - mean) / sd
    return out.astype(np.float32)


def _fill_excluded(roi: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
    """The network's view of ``roi`` (uint8): burned-in annotations in-painted (:mod:`pipeline.inpaint`)."""
    if excluded is None or not excluded.any():
        return roi
    if excluded.all():
        return np.zeros_like(roi)
    return inpaint_missing(roi, excluded)
