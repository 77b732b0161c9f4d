"""Pixels that carry no B-mode information, filled in from the grey around them.

Colour-flow pixels (their luma is the colour's, not the tissue's) and
burned-in annotations (caliper crosses, text) are missing data, not bright
tissue: a segmenter would take a red vessel or a caliper cross on a nerve's
border for structure. They are treated as holes and filled by Telea's
fast-marching in-painting from their surroundings, which keeps a nerve's rim
continuous where a caliper sits on it (a flat fill breaks it).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["INPAINT_MARGIN_PX", "INPAINT_RADIUS_PX", "inpaint_missing"]

#: Pixels around a missing pixel that are filled too (anti-aliased edges carry part of its value).
INPAINT_MARGIN_PX = 1
#: Neighbourhood radius of the in-painting, pixels.
INPAINT_RADIUS_PX = 3


def inpaint_missing(gray: np.ndarray, missing: np.ndarray, box: PixelBox | None = None) -> np.ndarray:
    """``gray`` with the ``missing`` pixels in-painted from the grey around them.

    Parameters
    ----------
    gray : ndarray of uint8, shape (rows, columns)
    missing : ndarray of bool, same shape
        Pixels with no B-mode information (plus ``INPAINT_MARGIN_PX`` around
        them) are filled.
    box : PixelBox, optional
        Only missing pixels inside it are filled.

    Returns
    -------
    ndarray
        A new image, or ``gray`` itself when there is nothing to fill.
    """
    mask = np.asarray(missing, dtype=bool)
    if box is not None:
        inside = np.zeros(mask.shape, dtype=bool)
        inside[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = True
        mask = mask & inside
    if not mask.any():
        return gray
    ys, xs = np.nonzero(mask)
    pad = INPAINT_MARGIN_PX + INPAINT_RADIUS_PX + 2
    y0, y1 = max(0, int(ys.min()) - pad), min(gray.shape[0], int(ys.max()) + pad + 1)
    x0, x1 = max(0, int(xs.min()) - pad), min(gray.shape[1], int(xs.max()) + pad + 1)
    sub: np.ndarray = mask[y0:y1, x0:x1].astype(np.uint8)
    if INPAINT_MARGIN_PX:
        size = 2 * INPAINT_MARGIN_PX + 1
        sub = cv2.dilate(sub, np.ones((size, size), np.uint8))
    out = gray.copy()
    out[y0:y1, x0:x1] = cv2.inpaint(np.ascontiguousarray(gray[y0:y1, x0:x1]), sub, INPAINT_RADIUS_PX, cv2.INPAINT_TELEA)
    return out
