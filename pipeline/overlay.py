"""QA overlays: the frame with the contour, calipers, ROI and values drawn on it.

On a colour / power Doppler frame the colour box is outlined and the flow
pixels counted in each nerve (or the muscle ROI) are outlined in magenta, so a
reviewer sees exactly which colour went into the vascularity index.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.analysis import FrameResult
from pipeline.loading import UltrasoundFrame
from pipeline.measurements.vascularity import Vascularity

__all__ = ["draw_overlay", "line_width_px"]

_GREEN = (0, 220, 0)
_YELLOW = (0, 220, 255)
_CYAN = (255, 200, 0)
_RED = (0, 0, 255)
_MAGENTA = (255, 0, 255)


def _poly(points: np.ndarray, shift: int = 4) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)


def line_width_px(shape: tuple[int, ...]) -> int:
    """Contour width for an image of ``shape``: about 2 px per 800 px of the longer side, at least 2."""
    return max(2, int(round(max(shape[:2]) / 400)))


def _outlined_polyline(image: np.ndarray, points: np.ndarray, closed: bool, colour: tuple[int, int, int], width: int) -> None:
    # A dark outline under the coloured line keeps it visible on bright tissue and on dark fluid alike.
    cv2.polylines(image, [_poly(points)], closed, (0, 0, 0), width + 2, cv2.LINE_AA, shift=4)
    cv2.polylines(image, [_poly(points)], closed, colour, width, cv2.LINE_AA, shift=4)


def _outline_flow(image: np.ndarray, value: Vascularity) -> None:
    """Outline the flow pixels counted in a structure (1 px, magenta)."""
    pts = np.asarray(value.flow_pixels, dtype=np.int64).reshape(-1, 2)
    if not len(pts):
        return
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    mask = np.zeros((int(y1 - y0) + 3, int(x1 - x0) + 3), np.uint8)
    mask[pts[:, 1] - y0 + 1, pts[:, 0] - x0 + 1] = 1
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(image, contours, -1, _MAGENTA, 1, cv2.LINE_8, offset=(int(x0) - 1, int(y0) - 1))


def _vascularity_line(prefix: str, value: Vascularity) -> str:
    if not value.measured:
        return f"{prefix}vascularity: {value.reason}"
    text = f"{prefix}flow {value.vascularity_index:.1f} % of {'nerve' if value.vessel_count is not None else 'ROI'}"
    if value.vessel_count is not None:
        text += f"  vessels {value.vessel_count}  grade {value.vascularity_grade}"
    return text


def draw_overlay(frame: UltrasoundFrame, result: FrameResult) -> np.ndarray:
    """BGR uint8 image of the frame with the measurement drawn on it.

    Contour and ROI in frame pixel coordinates, exactly as written to the
    outputs, so the reviewer sees the pixels the numbers came from.
    """
    base = frame.color[..., ::-1] if frame.color is not None else cv2.cvtColor(frame.gray, cv2.COLOR_GRAY2BGR)
    image = np.ascontiguousarray(base).copy()
    box = frame.calibration.tissue_box
    width = line_width_px(image.shape)
    cv2.rectangle(image, (box.x0, box.y0), (box.x1, box.y1), (90, 90, 90), 1)
    lines: list[str] = []
    doppler: Any = getattr(result, "doppler", None)  # narrowed by show_doppler below
    # Doppler: drawn only on frames that carry colour flow (a greyscale frame's "no colour flow data" is in the tables).
    show_doppler = doppler is not None and doppler.available
    if show_doppler:
        for b in doppler.boxes:
            cv2.rectangle(image, (b.x0, b.y0), (b.x1, b.y1), _MAGENTA, 1)
    if result.nerve is not None:
        # Every nerve found on the frame, numbered as in the tables and the SR.
        for number, n in enumerate(result.nerves, start=1):
            _outlined_polyline(image, n.contour_px, True, _GREEN, width)
            prefix = f"nerve {number}: " if len(result.nerves) > 1 else ""
            if len(result.nerves) > 1:
                x, y = np.asarray(n.contour_px).min(axis=0)
                cv2.putText(image, str(number), (int(x), max(int(y) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _GREEN, 1, cv2.LINE_AA)
            if n.cross_sectional_area_mm2 is not None:
                lines.append(f"{prefix}CSA {n.cross_sectional_area_mm2:.2f} mm2  flat {n.flattening_ratio:.2f}")
            lines.append(f"{prefix}echo {n.echogenicity.mean:.1f} +/- {n.echogenicity.sd:.1f}  conf {n.confidence:.2f}")
            if show_doppler:
                value = doppler.nerve(number - 1)
                _outline_flow(image, value)
                lines.append(_vascularity_line(prefix, value))
    elif result.muscle is not None:
        m = result.muscle
        _outlined_polyline(image, m.roi_polygon_px, True, _CYAN, max(1, width - 1))
        _outlined_polyline(image, m.superficial_edge_px, False, _YELLOW, width)
        _outlined_polyline(image, m.deep_edge_px, False, _YELLOW, width)
        caliper = np.asarray(m.caliper_px, dtype=float)
        _outlined_polyline(image, caliper, False, _GREEN, width)
        for x, y in caliper:
            cv2.drawMarker(image, (int(round(x)), int(round(y))), _GREEN, cv2.MARKER_CROSS, 6 * width + 3, width)
        if m.thickness_mm is not None:
            lines.append(f"thickness {m.thickness_mm:.2f} mm ({m.deep_boundary})")
        else:
            lines.append(f"thickness {m.thickness_px:.1f} px (uncalibrated)")
        e = m.echogenicity
        assert e is not None  # measure_muscle always sets it
        lines.append(f"echo {e.mean:.1f} +/- {e.sd:.1f} median {e.median:.0f}")
        if show_doppler and doppler.muscle is not None:
            _outline_flow(image, doppler.muscle)
            lines.append(_vascularity_line("", doppler.muscle))
    else:
        lines.append(result.reason[:90])
    if result.reason and result.measured:
        lines.append(result.reason[:90])
    if show_doppler and doppler.header.describe():
        lines.append(doppler.header.describe())
    lines.append("mskus automated measurement - not for diagnosis")
    y = max(box.y1 + 18, 18) if box.y1 + 18 * (len(lines) + 1) < image.shape[0] else 18
    for text in lines:
        color = _RED if not result.measured else (255, 255, 255)
        cv2.putText(image, text, (max(box.x0, 4), y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, (max(box.x0, 4), y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
        y += 17
    return image
