"""A muscle clip's fasciculation analysis on the study page (issue 20), read from its SR group.

The SR holds, per analysed clip, one group (:mod:`pipeline.sr.fasciculation`):
count, rate (/min), analysed and excluded seconds, and per event a
"Fasciculation time" NUM whose children give the frame of peak displacement
(TCOORD SELECTED FROM the clip's frame), the place (SCOORD POINT, DICOM
corner convention) and the duration, peak local speed and confidence; a
refused clip has the group with a "Reason no measurement was made" instead.
Reading the SR makes this work on a node archive as on an OUT_DIR
(``events.csv`` holds the same events but not their frames).

Each event also gets the frames to play around it (from t − 1 s to t + 1 s),
from the clip's frame timing (:func:`pipeline.cine.timing.frame_timing`).
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pydicom

from pipeline.cine.timing import frame_timing
from pipeline.sr import codes
from pipeline.sr.codes import concept_key
from pipeline.sr.items import SCOORD_OFFSET
from pipeline.sr.reader import MeasurementGroup, NumericMeasurement
from qa_review.items import ReviewableReport

__all__ = [
    "PLAY_MARGIN_S",
    "ClipFasciculation",
    "FasciculationEventView",
    "clip_fasciculations",
    "clip_frame_times",
    "is_fasciculation_group",
]

logger = logging.getLogger(__name__)

#: Seconds played before and after each event.
PLAY_MARGIN_S = 1.0

_COUNT = concept_key(codes.FASCICULATION_COUNT)
_RATE = concept_key(codes.FASCICULATION_RATE)
_ANALYSED = concept_key(codes.ANALYSED_DURATION)
_EXCLUDED = concept_key(codes.EXCLUDED_DURATION)
_TIME = concept_key(codes.FASCICULATION_TIME)
_DURATION = concept_key(codes.FASCICULATION_DURATION)
_SPEED = concept_key(codes.FASCICULATION_PEAK_SPEED)
_CONFIDENCE = concept_key(codes.FASCICULATION_CONFIDENCE)
_EXCLUSIONS = concept_key(codes.FASCICULATION_EXCLUSIONS)
_NOT_MEASURED = concept_key(codes.NOT_MEASURED_REASON)
_CLIP_VALUES = {_COUNT, _RATE, _ANALYSED, _EXCLUDED, _TIME}
_TRACKING_PREFIX = "fasciculation:"


@dataclass(frozen=True)
class FasciculationEventView:
    """One detected fasciculation.

    Attributes
    ----------
    number : int
        1-based, in time order as the SR lists them.
    time_s : float
        Time of peak displacement from the clip's first frame (s).
    frame_number : int or None
        1-based frame of peak displacement (``None`` when the SR names none).
    x_px, y_px : float or None
        Place, pixel centre convention (column, row from the top-left pixel's centre).
    x_mm, y_mm : float or None
        The same in mm from the top-left pixel's centre (``None`` when uncalibrated).
    duration_s, peak_speed_mm_s, confidence : float or None
    play_from, play_to : int or None
        1-based frames from t − 1 s to t + 1 s (``None`` without frame timing).
    """

    number: int
    time_s: float
    frame_number: int | None
    x_px: float | None = None
    y_px: float | None = None
    x_mm: float | None = None
    y_mm: float | None = None
    duration_s: float | None = None
    peak_speed_mm_s: float | None = None
    confidence: float | None = None
    play_from: int | None = None
    play_to: int | None = None


@dataclass(frozen=True)
class ClipFasciculation:
    """The fasciculation analysis of one muscle clip.

    Attributes
    ----------
    finding_id : str
        ``g<n>`` of the document under review; empty for a refused clip (no value to decide on).
    sop_instance_uid : str
        The clip.
    label : str
        What and where (the group's Tracking Identifier without its prefix).
    count, rate_per_min, analysed_s, excluded_s : float or None
    refusal : str
        Why the clip was not analysed (empty when it was).
    exclusions : str
        Which frames were excluded and why.
    events : tuple of FasciculationEventView
    number_of_frames : int
        Frames of the clip (1 when unknown).
    frame_interval_ms : float or None
        Median frame interval, for playback at the clip's speed.
    """

    finding_id: str
    sop_instance_uid: str
    label: str
    count: float | None = None
    rate_per_min: float | None = None
    analysed_s: float | None = None
    excluded_s: float | None = None
    refusal: str = ""
    exclusions: str = ""
    events: tuple[FasciculationEventView, ...] = ()
    number_of_frames: int = 1
    frame_interval_ms: float | None = None


def is_fasciculation_group(group: MeasurementGroup) -> bool:
    """The group of a clip's fasciculation analysis (measured or refused)."""
    if any(m.name.key in _CLIP_VALUES for m in group.measurements):
        return True
    return (group.tracking_identifier or "").startswith(_TRACKING_PREFIX)


@functools.lru_cache(maxsize=64)
def clip_frame_times(path: str) -> tuple[float, ...] | None:
    """Time of each frame of the clip at ``path`` (s from the first); ``None`` when unknown."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return frame_timing(ds, frames).frame_times_s if frames > 1 else None
    except Exception as exc:  # noqa: BLE001 - unreadable file: the page shows the events without playback
        logger.info("frame timing of %s unknown: %s", path, exc)
        return None


def _nested(measurement: NumericMeasurement, key: tuple[str, str]) -> float | None:
    return next((n.value for n in measurement.nested if n.name.key == key), None)


def _event(
    number: int, m: NumericMeasurement, mm_per_px: float | None, times: Sequence[float] | None
) -> FasciculationEventView:
    time_s = float(m.value) if m.value is not None else 0.0
    refs = [t.image for t in m.temporal if t.image is not None] + [c.image for c in m.coordinates if c.image is not None]
    frame = next((r.frame_numbers[0] for r in refs if r.frame_numbers), None)
    point = next((c.points[0] for c in m.coordinates if c.points and not c.is_3d), None)
    x = float(point[0]) - SCOORD_OFFSET if point is not None else None
    y = float(point[1]) - SCOORD_OFFSET if point is not None else None
    play_from = play_to = None
    if times:
        play_from = bisect.bisect_left(times, time_s - PLAY_MARGIN_S - 1e-9) + 1
        play_to = max(play_from, bisect.bisect_right(times, time_s + PLAY_MARGIN_S + 1e-9))
    return FasciculationEventView(
        number=number,
        time_s=time_s,
        frame_number=frame,
        x_px=x,
        y_px=y,
        x_mm=x * mm_per_px if x is not None and mm_per_px else None,
        y_mm=y * mm_per_px if y is not None and mm_per_px else None,
        duration_s=_nested(m, _DURATION),
        peak_speed_mm_s=_nested(m, _SPEED),
        confidence=_nested(m, _CONFIDENCE),
        play_from=play_from,
        play_to=play_to,
    )


def _value(group: MeasurementGroup, key: tuple[str, str]) -> float | None:
    return next((m.value for m in group.measurements if m.name.key == key), None)


def clip_fasciculations(
    reviewable: ReviewableReport,
    *,
    mm_per_px: Callable[[str], float | None] = lambda sop: None,
    frame_times: Callable[[str], tuple[float, ...] | None] = lambda sop: None,
) -> tuple[ClipFasciculation, ...]:
    """Every clip's fasciculation analysis in the document, in document order.

    Parameters
    ----------
    reviewable : ReviewableReport
        The document under review.
    mm_per_px : callable (SOP Instance UID) -> float or None
        The clip's pixel size (for the events' places in mm).
    frame_times : callable (SOP Instance UID) -> tuple of float or None
        The clip's frame times (s), for the frames played around each event.
    """
    out = []
    for index, group in enumerate(reviewable.report.groups):
        if not is_fasciculation_group(group):
            continue
        ref = group.source_images[0] if group.source_images else (group.images[0] if group.images else None)
        sop = ref.sop_instance_uid if ref is not None else ""
        times = frame_times(sop) if sop else None
        scale = mm_per_px(sop) if sop else None
        events = tuple(
            _event(n, m, scale, times)
            for n, m in enumerate((m for m in group.measurements if m.name.key == _TIME), start=1)
        )
        texts = {e.name.key: e.value for e in group.evaluations}
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)] if times else []
        label = (group.tracking_identifier or "").removeprefix(_TRACKING_PREFIX).strip()
        out.append(
            ClipFasciculation(
                finding_id=f"g{index + 1}" if group.measurements else "",
                sop_instance_uid=sop,
                label=label or "muscle clip",
                count=_value(group, _COUNT),
                rate_per_min=_value(group, _RATE),
                analysed_s=_value(group, _ANALYSED),
                excluded_s=_value(group, _EXCLUDED),
                refusal=texts.get(_NOT_MEASURED, ""),
                exclusions=texts.get(_EXCLUSIONS, ""),
                events=events,
                number_of_frames=len(times) if times else 1,
                frame_interval_ms=sorted(gaps)[len(gaps) // 2] * 1000.0 if gaps else None,
            )
        )
    return tuple(out)
