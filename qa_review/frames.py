"""Source frames for the browser viewer: one frame as a PNG without overlay, and the frame count.

The viewer (``static/viewer.js``) draws the findings itself, so the reviewer
can switch them off, zoom, change window/level and play a cine clip; the
frames come from the source image as the analysis loaded it
(:func:`pipeline.loading.load_ultrasound`).
"""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np
import pydicom

from pipeline.errors import MskusInputError
from pipeline.loading import UltrasoundFrame, load_ultrasound

__all__ = ["FrameImageError", "frame_count", "source_frame_png"]

logger = logging.getLogger(__name__)


class FrameImageError(RuntimeError):
    """The frame cannot be drawn (the message says why)."""


@functools.lru_cache(maxsize=256)
def frame_count(path: str) -> int:
    """Number of frames of the image at ``path`` (1 when unknown)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except Exception as exc:  # noqa: BLE001 - unreadable: one frame, the page still shows what it can
        logger.info("frame count of %s unknown: %s", path, exc)
        return 1


def source_frame(path: str, frame_number: int) -> UltrasoundFrame:
    """Frame ``frame_number`` (1-based) of the image at ``path``, decoded alone.

    Raises
    ------
    FrameImageError
        Missing or unloadable file, no such frame.
    """
    try:
        image = load_ultrasound(path)
        return next(image.iter_frames([frame_number - 1]))
    except (MskusInputError, OSError, IndexError, StopIteration) as exc:
        raise FrameImageError(f"cannot draw frame {frame_number} of {path}: {exc}") from None


@functools.lru_cache(maxsize=64)
def source_frame_png(path: str, frame_number: int) -> bytes:
    """Frame ``frame_number`` (1-based) of the image at ``path`` as a PNG, as displayed (RGB or gray).

    Raises
    ------
    FrameImageError
        Missing or unloadable file, no such frame.
    """
    frame = source_frame(path, frame_number)
    pixels = frame.color[..., ::-1] if frame.color is not None else frame.gray
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise FrameImageError(f"cannot encode frame {frame_number} of {path} as PNG")
    return encoded.tobytes()
