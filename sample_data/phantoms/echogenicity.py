"""Echogenicity helpers for the ground truth: luma, contour masks, gray statistics inside a nerve."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from skimage.draw import polygon as _sk_polygon


def frame_luma(frame: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of a gray or RGB frame, float64."""
    f = np.asarray(frame)
    if f.ndim == 2:
        return f.astype(np.float64)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def contour_mask(contour_px: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies inside the polygon ``contour_px``.

    Parameters
    ----------
    contour_px
        Closed polygon ``[[x, y], ...]`` (pixel centres at integer coordinates).
    shape
        ``(rows, cols)`` of the mask.

    Returns
    -------
    numpy.ndarray
        Boolean mask (the one used for ``echogenicity_*`` of nerves).
    """
    c = np.asarray(contour_px, dtype=np.float64)
    mask = np.zeros(shape[:2], dtype=bool)
    rr, cc = _sk_polygon(c[:, 1], c[:, 0], shape=shape[:2])
    mask[rr, cc] = True
    return mask


def nerve_echogenicity(luma: np.ndarray, contour_px: Sequence[Sequence[float]]) -> dict[str, float]:
    """Mean and SD of ``luma`` over pixels whose centre lies inside ``contour_px``.

    Parameters
    ----------
    luma
        2-D gray/luma image.
    contour_px
        Closed polygon ``[[x, y], ...]`` in the image's pixel coordinates.

    Returns
    -------
    dict
        ``echogenicity_mean``, ``echogenicity_sd`` (population SD), ``echogenicity_pixels``.
    """
    c = np.asarray(contour_px, dtype=np.float64)
    rr, cc = _sk_polygon(c[:, 1], c[:, 0], shape=luma.shape[:2])
    v = np.asarray(luma, dtype=np.float64)[rr, cc]
    return {
        "echogenicity_mean": round(float(v.mean()), 4),
        "echogenicity_sd": round(float(v.std()), 4),
        "echogenicity_pixels": int(v.size),
    }
