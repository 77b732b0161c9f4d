"""Which frames can be analysed: blur, noise, flicker and global motion checks.

A frame is compared with the recent good frames (running medians over the
last :data:`HISTORY` accepted frames): a sharpness (variance of the
Laplacian) well below the recent level is blur (the probe lifted or moved
fast), well above it is noise (interference, a noise burst), and a jump of
the mean gray value is flicker (gain change). Such frames are excluded:
they are not used for flow, and their time is counted as excluded.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["ExclusionReason", "FrameQuality", "FrameQualityMonitor", "frame_quality"]

#: Accepted frames the running medians look back over.
HISTORY = 25
#: A global-motion fit residual this many times the recent median marks a noisy frame.
FLOW_RESIDUAL_RATIO = 2.5


class ExclusionReason(str, enum.Enum):
    """Why a frame was excluded from the analysis."""

    GLOBAL_MOTION = "global motion"
    BLUR = "blur"
    NOISE = "noise"
    FLICKER = "flicker"
    WIDESPREAD_MOTION = "widespread motion"


@dataclass(frozen=True)
class FrameQuality:
    """Sharpness (variance of the Laplacian, gray levels squared) and mean gray value of a frame's ROI."""

    sharpness: float
    brightness: float


def frame_quality(roi: np.ndarray) -> FrameQuality:
    """Sharpness and brightness of the ROI of a frame (uint8, at the scanner's resolution).

    Noise is judged at the scanner's resolution (every second pixel each way,
    for speed): resampling to the working size would average it away.
    """
    sample = np.ascontiguousarray(roi[::2, ::2]) if min(roi.shape) >= 64 else roi
    lap = cv2.Laplacian(sample, cv2.CV_32F, ksize=3)
    return FrameQuality(sharpness=float(lap.var()), brightness=float(sample.mean()))


class FrameQualityMonitor:
    """Judges each frame against the running medians of recently accepted frames.

    Parameters
    ----------
    sharpness_band, brightness_band : tuple of float
        Accepted ratios to the running medians.
    """

    def __init__(self, sharpness_band: tuple[float, float], brightness_band: tuple[float, float]) -> None:
        self.sharpness_band = sharpness_band
        self.brightness_band = brightness_band
        self._sharpness: deque[float] = deque(maxlen=HISTORY)
        self._brightness: deque[float] = deque(maxlen=HISTORY)
        self._flow_residual: deque[float] = deque(maxlen=HISTORY)

    def judge(self, quality: FrameQuality) -> ExclusionReason | None:
        """``None`` when the frame is usable (it then joins the history), else why not."""
        if self._sharpness:
            ref_s = float(np.median(self._sharpness))
            ref_b = float(np.median(self._brightness))
            ratio_s = quality.sharpness / max(ref_s, 1e-6)
            ratio_b = quality.brightness / max(ref_b, 1e-6)
            if ratio_b < self.brightness_band[0] or ratio_b > self.brightness_band[1]:
                return ExclusionReason.FLICKER
            if ratio_s < self.sharpness_band[0]:
                return ExclusionReason.BLUR
            if ratio_s > self.sharpness_band[1]:
                return ExclusionReason.NOISE
        self._sharpness.append(quality.sharpness)
        self._brightness.append(quality.brightness)
        return None

    def judge_flow(self, residual_px: float) -> ExclusionReason | None:
        """``None`` when the global-motion fit residual (working px) is like recent ones, else NOISE.

        Flow through a frame whose speckle does not match its neighbours' (a
        noise burst the sharpness check missed, an out-of-plane jump) leaves
        a large residual everywhere.
        """
        if len(self._flow_residual) >= 3 and residual_px > FLOW_RESIDUAL_RATIO * float(np.median(self._flow_residual)):
            return ExclusionReason.NOISE
        self._flow_residual.append(residual_px)
        return None
