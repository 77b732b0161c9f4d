"""Frame composition: a tissue image placed in the black scanner frame with burned-in annotations."""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import cv2
import numpy as np

from .doppler import _velocity_rgb

#: Frame size (rows, columns) of every generated image.
FRAME_SHAPE: tuple[int, int] = (600, 800)


def truth_to_frame(truth: dict[str, Any], origin_px: tuple[int, int]) -> dict[str, Any]:
    """Shift pixel coordinates of a scene truth from tissue-region to frame coordinates.

    Parameters
    ----------
    truth
        Truth from a ``render_*`` function.
    origin_px
        ``(x0, y0)`` of the tissue region in the frame.

    Returns
    -------
    dict
        A deep copy with ``center_px``, ``contour_px``, ``vessel.center_px``,
        ``inner_edges_px_at_center``, ``center_x_px`` and the inner-edge polylines shifted.
    """
    ox, oy = origin_px
    t = copy.deepcopy(truth)

    def pt(p: Sequence[float]) -> list[float]:
        return [round(p[0] + ox, 3), round(p[1] + oy, 3)]

    if "center_px" in t:
        t["center_px"] = pt(t["center_px"])
    if "contour_px" in t:
        t["contour_px"] = [pt(p) for p in t["contour_px"]]
    if t.get("vessel"):
        t["vessel"]["center_px"] = pt(t["vessel"]["center_px"])
    if "inner_edges_px_at_center" in t:
        t["inner_edges_px_at_center"] = [round(v + oy, 3) for v in t["inner_edges_px_at_center"]]
    if "center_x_px" in t:
        t["center_x_px"] = round(t["center_x_px"] + ox, 3)
    for key in ("inner_edge_superficial_px", "inner_edge_deep_px"):
        if key in t:
            t[key] = [pt(p) for p in t[key]]
    return t


def compose_frame(
    tissue: np.ndarray,
    origin_px: tuple[int, int],
    *,
    mm_per_px: float,
    text_lines: Sequence[str] = (),
    right_text: Sequence[str] = (),
    focus_depth_mm: float | None = None,
    frame_shape: tuple[int, int] = FRAME_SHAPE,
    rgb: bool = False,
    color_bar: bool = False,
) -> np.ndarray:
    """Place a tissue image in a black scanner frame with burned-in annotations.

    Outside the tissue region only black, white text (top left / top right), depth
    tick dots along the right edge of the tissue region (every 5 mm, larger every
    10 mm), a ``>`` focus marker on the left and a vertical gray-scale bar near the
    right edge of the frame are drawn (plus an optional colour-velocity bar).

    Parameters
    ----------
    tissue
        ``uint8`` tissue image (rows, cols).
    origin_px
        ``(x0, y0)`` of the tissue region in the frame.
    mm_per_px
        Pixel size (for the depth ticks).
    text_lines, right_text
        Lines of text at the top left / top right.
    focus_depth_mm
        Depth of the focus marker; default 40 % of the image depth.
    frame_shape
        ``(rows, cols)`` of the frame.
    rgb
        Return an ``(rows, cols, 3)`` RGB frame (gray replicated).
    color_bar
        Draw a red/blue colour-velocity bar beside the gray bar.

    Returns
    -------
    numpy.ndarray
        ``uint8`` frame.
    """
    rows, cols = frame_shape
    h, w = tissue.shape
    x0, y0 = origin_px
    if x0 < 30 or y0 < 58 or x0 + w + 20 > cols - 40 or y0 + h > rows:
        raise ValueError("tissue region does not leave room for the annotations")
    frame = np.zeros((rows, cols, 3), np.uint8)
    frame[y0 : y0 + h, x0 : x0 + w] = tissue[..., None]
    white = (255, 255, 255)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, line in enumerate(text_lines):
        cv2.putText(frame, line, (10, 17 + 17 * i), font, 0.45, white, 1, cv2.LINE_AA)
    for i, line in enumerate(right_text):
        (tw, _), _ = cv2.getTextSize(line, font, 0.42, 1)
        cv2.putText(frame, line, (cols - 12 - tw, 17 + 16 * i), font, 0.42, white, 1, cv2.LINE_AA)
    # depth ticks
    xt = x0 + w + 7
    step = 5.0 / mm_per_px
    n = int(math.floor((h - 1) / step)) + 1
    for i in range(n):
        y = int(round(y0 + i * step))
        r = 2 if i % 2 == 0 else 1
        frame[y - r + 1 : y + r, xt - r + 1 : xt + r] = 255
    # focus marker
    fd = focus_depth_mm if focus_depth_mm is not None else 0.4 * h * mm_per_px
    yf = int(round(y0 + fd / mm_per_px))
    cv2.polylines(frame, [np.array([[x0 - 16, yf - 4], [x0 - 11, yf], [x0 - 16, yf + 4]], np.int32)], False,
                  white, 1, cv2.LINE_AA)
    # gray bar
    bx = cols - 30
    ramp = np.linspace(255, 0, 256).round().astype(np.uint8)
    frame[y0 : y0 + 256, bx : bx + 10] = ramp[:, None, None]
    if color_bar:
        vals = np.linspace(1.0, -1.0, 160)
        bar = np.stack([_velocity_rgb(v) for v in vals]).astype(np.uint8)
        frame[y0 + 290 : y0 + 450, bx : bx + 10] = bar[:, None, :]
        for txt, yy in (("+18", y0 + 284), ("-18", y0 + 466)):
            cv2.putText(frame, txt, (bx - 20, yy), font, 0.38, white, 1, cv2.LINE_AA)
    return frame if rgb else frame[..., 0].copy()
