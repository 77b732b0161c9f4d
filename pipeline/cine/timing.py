"""Frame timing of a cine clip: when each frame was acquired.

DICOM says it in one of several places (PS3.3 C.7.6.5 Cine Module, C.8.5.6
US Multi-frame): Frame Time (0018,1063, ms between frames), Frame Time Vector
(0018,1065, ms from the previous frame, one value per frame), Cine Rate
(0018,0040, frames/s) or, for display only, Recommended Display Frame Rate
(0008,2144, frames/s). The Frame Increment Pointer (0028,0009) says which one
the frames follow; when it names the vector, the vector is preferred.
Without any of them no rate or time can be reported: :func:`frame_timing`
raises :class:`NoFrameTimingError` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pipeline.errors import MskusInputError

__all__ = ["FrameTiming", "NoFrameTimingError", "TimingSource", "frame_timing"]

logger = logging.getLogger(__name__)

_FRAME_TIME_VECTOR_TAG = 0x00181065


class NoFrameTimingError(MskusInputError):
    """The clip says nothing usable about when its frames were acquired."""

    code = "no_frame_timing"


class TimingSource:
    """Names of the attributes timing is read from (as written in reasons and SR parameters)."""

    FRAME_TIME = "Frame Time"
    FRAME_TIME_VECTOR = "Frame Time Vector"
    CINE_RATE = "Cine Rate"
    DISPLAY_RATE = "Recommended Display Frame Rate"


@dataclass(frozen=True)
class FrameTiming:
    """Acquisition time of each frame.

    Attributes
    ----------
    frame_times_s : tuple of float
        Time of each frame from the first frame (s); ``frame_times_s[0] == 0``,
        strictly increasing.
    source : str
        The attribute the times come from (:class:`TimingSource`).
    """

    frame_times_s: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        times = np.asarray(self.frame_times_s, dtype=float)
        if times.size == 0 or times[0] != 0.0:
            raise ValueError("frame times must start at 0")
        if times.size > 1 and not np.all(np.diff(times) > 0):
            raise ValueError("frame times must increase")

    @classmethod
    def uniform(cls, number_of_frames: int, frame_interval_s: float, source: str = TimingSource.FRAME_TIME) -> FrameTiming:
        """Evenly spaced frames, ``frame_interval_s`` apart (s)."""
        if frame_interval_s <= 0 or number_of_frames < 1:
            raise ValueError("a uniform timing needs a positive interval and at least one frame")
        return cls(tuple(float(k) * frame_interval_s for k in range(number_of_frames)), source)

    @property
    def number_of_frames(self) -> int:
        return len(self.frame_times_s)

    @property
    def frame_durations_s(self) -> np.ndarray:
        """How long each frame stands for (s): the interval to the next frame (the last: the median interval)."""
        times = np.asarray(self.frame_times_s, dtype=float)
        if times.size == 1:
            return np.zeros(1)
        gaps = np.diff(times)
        return np.append(gaps, np.median(gaps))

    @property
    def duration_s(self) -> float:
        """Length of the clip (s): the sum of the frame durations."""
        return float(self.frame_durations_s.sum())

    @property
    def frames_per_second(self) -> float:
        """Median frame rate (frames/s); 0 for a single frame."""
        if self.number_of_frames < 2:
            return 0.0
        return float(1.0 / np.median(np.diff(np.asarray(self.frame_times_s))))


def _positive_number(dataset: Dataset, keyword: str) -> float | None:
    value = dataset.get(keyword)
    if value is None or value == "" or isinstance(value, (list, tuple, MultiValue)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _from_vector(dataset: Dataset, frames: int) -> FrameTiming | None:
    raw = dataset.get("FrameTimeVector")
    if raw is None or raw == "":
        return None
    values = np.asarray([float(v) for v in (raw if isinstance(raw, (list, tuple, MultiValue)) else [raw])], dtype=float)
    if values.size != frames or not np.all(np.isfinite(values)):
        logger.info("Frame Time Vector has %d values for %d frames: not used", values.size, frames)
        return None
    increments = values[1:]
    if increments.size and not np.all(increments > 0):
        logger.info("Frame Time Vector has non-positive increments: not used")
        return None
    times = np.concatenate([[0.0], np.cumsum(increments)]) / 1000.0
    return FrameTiming(tuple(float(t) for t in times), TimingSource.FRAME_TIME_VECTOR)


def frame_timing(dataset: Dataset, number_of_frames: int) -> FrameTiming:
    """The acquisition time of every frame of a multi-frame image.

    Parameters
    ----------
    dataset : pydicom.dataset.Dataset
        The image header.
    number_of_frames : int
        Frames in the image.

    Returns
    -------
    FrameTiming

    Raises
    ------
    NoFrameTimingError
        None of Frame Time, Frame Time Vector, Cine Rate or Recommended
        Display Frame Rate holds a usable value; the reason says so.
    """
    pointer = dataset.get("FrameIncrementPointer")
    pointers = [int(p) for p in pointer] if isinstance(pointer, (list, tuple, MultiValue)) else ([int(pointer)] if pointer else [])
    if _FRAME_TIME_VECTOR_TAG in pointers:
        timing = _from_vector(dataset, number_of_frames)
        if timing is not None:
            return timing
    frame_time_ms = _positive_number(dataset, "FrameTime")
    if frame_time_ms is not None:
        return FrameTiming.uniform(number_of_frames, frame_time_ms / 1000.0, TimingSource.FRAME_TIME)
    timing = _from_vector(dataset, number_of_frames)
    if timing is not None:
        return timing
    for keyword, source in (("CineRate", TimingSource.CINE_RATE), ("RecommendedDisplayFrameRate", TimingSource.DISPLAY_RATE)):
        rate = _positive_number(dataset, keyword)
        if rate is not None:
            return FrameTiming.uniform(number_of_frames, 1.0 / rate, source)
    raise NoFrameTimingError(
        "no frame timing: Frame Time, Frame Time Vector, Cine Rate and Recommended Display Frame Rate "
        "are all missing or invalid, so no fasciculation time or rate can be given"
    )
