"""The key frame of a fasciculation event: the clip's frame of peak displacement with the place marked.

Drawn from the source clip (one frame decoded, :func:`pipeline.loading.load_ultrasound`)
with a yellow circle around the event's place and a cross at its centre, so
the reviewer sees where the twitch was without playing the clip.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from qa_review.frames import FrameImageError, source_frame

__all__ = ["KeyFrameError", "event_key_frame_png"]

_YELLOW = (0, 220, 255)
_SHIFT = 4


class KeyFrameError(RuntimeError):
    """The key frame cannot be drawn (the message says why)."""


@functools.lru_cache(maxsize=64)
def event_key_frame_png(path: str, frame_number: int, x_px: float, y_px: float, radius_px: float = 12.0) -> bytes:
    """PNG of frame ``frame_number`` (1-based) of the clip at ``path`` with the place (``x_px``, ``y_px``,
    pixel-centre convention) circled.

    Raises
    ------
    KeyFrameError
        Missing or unloadable file, no such frame.
    """
    try:
        frame = source_frame(path, frame_number)
    except FrameImageError as exc:
        raise KeyFrameError(str(exc)) from None
    base = frame.color[..., ::-1] if frame.color is not None else cv2.cvtColor(frame.gray, cv2.COLOR_GRAY2BGR)
    canvas = np.ascontiguousarray(base).copy()
    scale = 1 << _SHIFT
    centre = (int(round(x_px * scale)), int(round(y_px * scale)))
    cv2.circle(canvas, centre, int(round(radius_px * scale)), _YELLOW, 1, cv2.LINE_AA, _SHIFT)
    cv2.drawMarker(canvas, (int(round(x_px)), int(round(y_px))), _YELLOW, cv2.MARKER_CROSS, 7, 1)
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise KeyFrameError(f"cannot encode frame {frame_number} of {path} as PNG")
    return encoded.tobytes()
