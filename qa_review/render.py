"""An overlay drawn from the source image and the SR coordinates.

Used when no QA overlay PNG was written (the storage node keeps none). The
drawing follows :func:`pipeline.overlay.draw_overlay`: nerve contour in
green, muscle ROI in cyan, calipers in green with end markers, the tissue
region's box in gray, values and a "not for diagnosis" line as text. The
coordinates are the SR's (DICOM SCOORD: the top-left corner of the image at
(0, 0)), so the reviewer sees exactly what the document claims. On a colour /
power Doppler frame the colour box and the flow pixels inside each contour or
ROI (those the vascularity index counts, found again by the same detector) are
outlined in magenta, as on the QA overlay.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.errors import MskusInputError
from pipeline.loading import UltrasoundFrame, load_ultrasound
from pipeline.measurements.nerve import contour_mask
from pipeline.measurements.vascularity import detect_colour_flow
from qa_review.model import Overlay

__all__ = ["RenderError", "render_overlay_png"]

logger = logging.getLogger(__name__)

_GREEN = (0, 220, 0)
_CYAN = (255, 200, 0)
_YELLOW = (0, 220, 255)
_MAGENTA = (255, 0, 255)
_SHIFT = 4
_SCOORD_OFFSET = 0.5  # SCOORD corner convention -> pixel-centre coordinates


class RenderError(RuntimeError):
    """The source frame cannot be drawn (the message says why)."""


def _poly(points: Sequence[tuple[float, float]]) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64) - _SCOORD_OFFSET
    return np.round(pts * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _point(p: tuple[float, float]) -> tuple[int, int]:
    return int(round(p[0] - _SCOORD_OFFSET)), int(round(p[1] - _SCOORD_OFFSET))


def _draw(image: np.ndarray, overlay: Overlay) -> None:
    pts = overlay.points
    if overlay.kind in ("contour", "roi"):
        colour = _GREEN if overlay.kind == "contour" else _CYAN
        cv2.polylines(image, [_poly(pts)], True, colour, 1, cv2.LINE_AA, shift=_SHIFT)
    elif overlay.kind in ("caliper", "line"):
        cv2.polylines(image, [_poly(pts)], False, _GREEN, 1, cv2.LINE_AA, shift=_SHIFT)
        if overlay.kind == "caliper":
            for p in (pts[0], pts[-1]):
                cv2.drawMarker(image, _point(p), _GREEN, cv2.MARKER_CROSS, 9, 1)
    elif overlay.kind == "point":
        for p in pts:
            cv2.drawMarker(image, _point(p), _YELLOW, cv2.MARKER_CROSS, 9, 1)
    elif overlay.kind == "ellipse" and len(pts) == 4:
        (a0, a1, b0, b1) = (np.asarray(p) - _SCOORD_OFFSET for p in pts)
        centre = (a0 + a1) / 2
        major, minor = np.linalg.norm(a1 - a0) / 2, np.linalg.norm(b1 - b0) / 2
        angle = float(np.degrees(np.arctan2(a1[1] - a0[1], a1[0] - a0[0])))
        cv2.ellipse(image, (int(round(centre[0])), int(round(centre[1]))), (int(round(major)), int(round(minor))),
                    angle, 0, 360, _GREEN, 1, cv2.LINE_AA)


def _outline_flow(image: np.ndarray, frame: UltrasoundFrame, overlays: Sequence[Overlay]) -> None:
    """The colour box and the colour-flow pixels inside each contour / ROI, outlined in magenta."""
    if frame.color is None:
        return
    flow = detect_colour_flow(frame.color, frame.calibration, frame.doppler, gray=frame.gray)
    if flow.mask is None or not flow.mask.any():
        return
    for b in flow.boxes:
        cv2.rectangle(image, (b.x0, b.y0), (b.x1, b.y1), _MAGENTA, 1)
    for overlay in overlays:
        if overlay.kind not in ("contour", "roi") or len(overlay.points) < 3:
            continue
        region = contour_mask(np.asarray(overlay.points, dtype=np.float64) - _SCOORD_OFFSET, flow.mask.shape)
        inside = (flow.mask & region).astype(np.uint8)
        if inside.any():
            contours, _ = cv2.findContours(inside, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(image, contours, -1, _MAGENTA, 1, cv2.LINE_8)


def _text(image: np.ndarray, lines: Sequence[str], y0: int, x0: int) -> None:
    y = y0
    for line in lines:
        cv2.putText(image, line, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, (x0, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        y += 17


def _ascii(text: str) -> str:
    return text.replace("²", "2").encode("ascii", "replace").decode("ascii")


@functools.lru_cache(maxsize=32)
def render_overlay_png(path: str, frame_number: int, overlays: tuple[Overlay, ...]) -> bytes:
    """PNG of frame ``frame_number`` (1-based) of the image at ``path`` with ``overlays`` drawn.

    Raises
    ------
    RenderError
        The file is missing, not a loadable ultrasound image, or has no such frame.
    """
    try:
        image = load_ultrasound(path)
        frame = next(image.iter_frames([frame_number - 1]))
    except (MskusInputError, OSError, IndexError, StopIteration) as exc:
        raise RenderError(f"cannot draw frame {frame_number} of {path}: {exc}") from None
    base = frame.color[..., ::-1] if frame.color is not None else cv2.cvtColor(frame.gray, cv2.COLOR_GRAY2BGR)
    canvas = np.ascontiguousarray(base).copy()
    box = frame.calibration.tissue_box
    cv2.rectangle(canvas, (box.x0, box.y0), (box.x1, box.y1), (90, 90, 90), 1)
    for overlay in overlays:
        _draw(canvas, overlay)
    _outline_flow(canvas, frame, overlays)
    lines = [_ascii(o.label) for o in overlays if o.label]
    lines = list(dict.fromkeys(lines))
    lines.append("mskus automated measurement - not for diagnosis (drawn from the SR)")
    fits_below = box.y1 + 18 * (len(lines) + 1) < canvas.shape[0]
    _text(canvas, lines, box.y1 + 18 if fits_below else 18, max(box.x0, 4))
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise RenderError(f"cannot encode frame {frame_number} of {path} as PNG")
    return encoded.tobytes()
