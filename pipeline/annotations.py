"""Burned-in annotations: text, calipers, body marks and scale bars drawn into the pixels.

Scanners draw annotations as thin strokes of one flat gray (or colour) level
with a sharp step to what lies around them; tissue speckle is a smooth,
continuously varying texture. A stroke pixel here is one that stands far
above its surroundings at a small scale (white top-hat), belongs to a
connected stroke whose gray levels are nearly constant, and whose
one-pixel surround is much darker. Colour annotations are colour pixels
(:func:`pipeline.measurements.echogenicity.colour_pixel_mask`) and are left
to that mask.

The mask is dilated by a small margin (anti-aliasing, JPEG ringing) and is
excluded from nerve candidates and from every measurement ROI.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.calibration import PixelBox

__all__ = ["burned_in_annotation_mask"]

#: Structuring element for the top-hat: strokes narrower than this (pixels) stand out.
STROKE_KERNEL_PX = 7
#: A stroke pixel stands this far (gray levels) above the opening.
MIN_TOPHAT = 60
#: and is at least this bright.
MIN_GRAY = 120
#: Share of a stroke's pixels within ``CORE_TOLERANCE`` of its brightest (flat drawing colour;
#: a speckle grain peaks in one or two pixels).
MIN_CORE_SHARE = 0.4
CORE_TOLERANCE = 10
#: Fewest core pixels of a stroke.
MIN_CORE_PX = 3
#: The stroke's one-pixel surround is at least this much darker than the stroke (sharp step).
MIN_EDGE_STEP = 70.0
#: Glyphs and markers (letters, caliper crosses, body marks): sparse in their box (strokes, not
#: blobs like a bright speckle grain), compact (not a long oblique tissue line), box side in pixels.
MAX_GLYPH_FILL = 0.6
MAX_GLYPH_ELONGATION = 4.0
GLYPH_SIDE_PX = (5, 40)
#: Rulers, ticks and bars: straight, exactly horizontal or vertical, at most this thick ...
MAX_BAR_THICKNESS_PX = 3
#: ... and at least this long; tissue interfaces are never exactly axis-aligned and one pixel thin.
MIN_BAR_LENGTH_PX = 8
#: Gap (pixels) between strokes of one word or marker.
WORD_GAP_PX = 5
#: Letters followed from a recognised glyph along a word.
WORD_STEPS = 8
#: Margin (pixels) added around the detected strokes.
MARGIN_PX = 2


def burned_in_annotation_mask(gray: np.ndarray, box: PixelBox | None = None) -> np.ndarray:
    """Boolean mask of burned-in annotation strokes in an 8-bit gray frame.

    Parameters
    ----------
    gray : ndarray of uint8, shape (rows, columns)
        The 8-bit B-mode (luma) frame.
    box : PixelBox, optional
        Look only inside this box (the tissue region): the step from tissue
        to the black outside the region is not an annotation edge.

    Returns
    -------
    ndarray of bool, same shape
        True on annotation pixels (plus a ``MARGIN_PX`` margin).
    """
    if box is not None:
        out = np.zeros(gray.shape, dtype=bool)
        out[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = burned_in_annotation_mask(
            gray[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1]
        )
        return out
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STROKE_KERNEL_PX, STROKE_KERNEL_PX))
    tophat = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)
    candidate = ((tophat >= MIN_TOPHAT) & (gray >= MIN_GRAY)).astype(np.uint8)
    if not candidate.any():
        return np.zeros(gray.shape, dtype=bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if n <= 1:
        return np.zeros(gray.shape, dtype=bool)
    flat: np.ndarray = labels.ravel()
    values = gray.ravel()
    on = flat > 0
    idx, val = flat[on], values[on].astype(np.int32)
    peak = np.zeros(n, dtype=np.int32)
    np.maximum.at(peak, idx, val)
    core = val >= peak[idx] - CORE_TOLERANCE
    count = np.bincount(idx, minlength=n).astype(np.float64)
    core_count = np.bincount(idx[core], minlength=n).astype(np.float64)
    core_mean = np.bincount(idx[core], weights=val[core], minlength=n) / np.maximum(core_count, 1.0)
    # The one-pixel surround of each component: dilated labels minus the components.
    grown_labels = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32).ravel()
    ring = (grown_labels > 0) & ~on
    ring_count = np.bincount(grown_labels[ring], minlength=n).astype(np.float64)
    ring_mean = np.bincount(grown_labels[ring], weights=values[ring].astype(np.float64), minlength=n) / np.maximum(ring_count, 1.0)
    # Shape of each component: box, fill and elongation (second moments of its pixels).
    width = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
    height = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    fill = count / np.maximum(width * height, 1.0)
    ys, xs = np.divmod(np.flatnonzero(on), gray.shape[1])
    mx = np.bincount(idx, weights=xs, minlength=n) / np.maximum(count, 1.0)
    my = np.bincount(idx, weights=ys, minlength=n) / np.maximum(count, 1.0)
    dx, dy = xs - mx[idx], ys - my[idx]
    cxx = np.bincount(idx, weights=dx * dx, minlength=n) / np.maximum(count, 1.0)
    cyy = np.bincount(idx, weights=dy * dy, minlength=n) / np.maximum(count, 1.0)
    cxy = np.bincount(idx, weights=dx * dy, minlength=n) / np.maximum(count, 1.0)
    half_trace, det_root = (cxx + cyy) / 2, np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    elongation = np.sqrt((half_trace + det_root + 0.25) / (half_trace - det_root + 0.25))
    side = np.maximum(width, height)
    glyph = (fill <= MAX_GLYPH_FILL) & (elongation <= MAX_GLYPH_ELONGATION) & (side >= GLYPH_SIDE_PX[0]) & (side <= GLYPH_SIDE_PX[1])
    bar = (np.minimum(width, height) <= MAX_BAR_THICKNESS_PX) & (side >= MIN_BAR_LENGTH_PX) & (fill >= 0.8)
    drawn = (core_count >= MIN_CORE_PX) & (core_count >= MIN_CORE_SHARE * count) & (core_mean - ring_mean >= MIN_EDGE_STEP)
    drawn[0] = False
    keep = drawn & (glyph | bar)
    # Text comes in words: a flat, sharp-edged stroke next to a recognised glyph is text too (and the
    # stroke next to that one, up to a few letters on).
    gap = np.ones((2 * WORD_GAP_PX + 1,) * 2, np.uint8)
    for _ in range(WORD_STEPS):
        if not keep.any():
            break
        near = cv2.dilate(keep[labels].astype(np.uint8), gap).ravel() > 0
        touched = np.zeros(n, dtype=bool)
        touched[np.unique(flat[near & on])] = True
        grown = keep | (drawn & touched)
        if (grown == keep).all():
            break
        keep = grown
    mask = keep[labels]
    if MARGIN_PX and mask.any():
        size = 2 * MARGIN_PX + 1
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    return mask
