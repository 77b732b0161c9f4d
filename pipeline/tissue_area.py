"""Estimate where the B-mode image lies when the file does not say.

Scanner exports put the B-mode image on a flat background (black, or gray on
some devices) with burned-in text, depth ticks and a gray bar around it.
Without a Sequence of Ultrasound Regions the tissue area is estimated as the
largest solid block of speckle texture (local standard deviation above that
of a flat background): thin structures (text strokes, ticks, narrow bars) are
removed by a morphological opening.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["estimate_tissue_box"]


def estimate_tissue_box(gray: np.ndarray, *, min_feature_px: int = 25) -> PixelBox:
    """Bounding box of the largest solid non-black area of an 8-bit frame.

    Parameters
    ----------
    gray : ndarray of uint8, shape (rows, columns)
        The grayscale frame.
    min_feature_px : int
        Structures thinner than this (text, ticks, bars) are ignored.

    Returns
    -------
    PixelBox
        Inclusive bounds in frame pixels; the whole frame when nothing stands
        out (an image that fills its frame).
    """
    rows, columns = gray.shape
    whole = PixelBox(0, 0, columns - 1, rows - 1)
    # Speckle is textured; backgrounds, black or gray, are flat.
    img = gray.astype(np.float32)
    mean = cv2.blur(img, (9, 9))
    local_sd = np.sqrt(np.clip(cv2.blur(img * img, (9, 9)) - mean * mean, 0, None))
    mask = (local_sd > 0.75).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (min_feature_px, min_feature_px))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return whole
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    if areas[best - 1] < 0.05 * rows * columns:
        return whole
    x, y, w, h = (int(v) for v in stats[best, :4])
    # The blur spread the block by a few pixels: trim rows/columns that are
    # mostly black in the original image.
    # A 3x3 texture test is sharp enough to find the block's true border.
    sub = img[y : y + h, x : x + w]
    m3 = cv2.blur(sub, (3, 3))
    sd3 = np.sqrt(np.clip(cv2.blur(sub * sub, (3, 3)) - m3 * m3, 0, None))
    block = sd3 > 0.75
    rows_ok = np.flatnonzero(block.mean(axis=1) > 0.3)
    cols_ok = np.flatnonzero(block.mean(axis=0) > 0.3)
    if rows_ok.size == 0 or cols_ok.size == 0:
        return PixelBox(x, y, x + w - 1, y + h - 1)
    return PixelBox(x + int(cols_ok[0]), y + int(rows_ok[0]), x + int(cols_ok[-1]), y + int(rows_ok[-1]))
