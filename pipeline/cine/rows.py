"""Table rows of a clip's fasciculation analysis (CONTRACT.md section 2): pure functions.

- ``measurements.csv``: four clip-level rows, ``fasciculation_count`` (1),
  ``fasciculation_rate`` (/min), ``analysed_seconds`` and
  ``excluded_seconds`` (s), with frame :data:`CLIP_FRAME` (0; written as an
  empty cell: the values belong to the clip, not to a frame). A refused clip
  gives the four rows refused with the reason.
- ``events.csv``: one :class:`EventRow` per event, columns :data:`EVENT_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.analysis import MeasurementRow, RowStatus
from pipeline.cine.result import FasciculationResult

__all__ = ["CLIP_FRAME", "EVENT_COLUMNS", "EventRow", "event_rows", "fasciculation_rows"]

#: Frame value of clip-level rows (frames are 1-based, so 0 is never a frame); written as an empty cell.
CLIP_FRAME = 0

#: Columns of ``events.csv`` (CONTRACT.md section 2), in order.
EVENT_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "sop_instance_uid",
    "structure",
    "laterality",
    "time_s",
    "duration_s",
    "x_px",
    "y_px",
    "peak_speed_mm_s",
    "confidence",
)


def _float_cell(value: float) -> str:
    """Shortest round-trip text of a float (as ``measurements.csv`` writes them)."""
    return repr(float(value))


@dataclass(frozen=True)
class EventRow:
    """One row of ``events.csv``: a detected fasciculation (times in s, pixels in frame pixel centres, mm/s)."""

    study_uid: str
    sop_instance_uid: str
    structure: str
    laterality: str
    time_s: float
    duration_s: float
    x_px: float
    y_px: float
    peak_speed_mm_s: float
    confidence: float

    def cells(self) -> list[str]:
        """The cells in :data:`EVENT_COLUMNS` order."""
        return [
            self.study_uid,
            self.sop_instance_uid,
            self.structure,
            self.laterality,
            *(_float_cell(v) for v in (self.time_s, self.duration_s, self.x_px, self.y_px, self.peak_speed_mm_s, self.confidence)),
        ]


def event_rows(
    result: FasciculationResult, *, study_uid: str, sop_instance_uid: str, structure: str, laterality: str
) -> list[EventRow]:
    """One ``events.csv`` row per event, in time order (none for a refused clip)."""
    return [
        EventRow(
            study_uid=study_uid,
            sop_instance_uid=sop_instance_uid,
            structure=structure,
            laterality=laterality,
            time_s=e.time_s,
            duration_s=e.duration_s,
            x_px=e.x_px,
            y_px=e.y_px,
            peak_speed_mm_s=e.peak_speed_mm_s,
            confidence=e.confidence,
        )
        for e in result.events
    ]


def fasciculation_rows(
    result: FasciculationResult,
    *,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    source_file: str,
    structure: str,
    laterality: str,
    calibration: str = "",
    mm_per_px: float | None = None,
) -> list[MeasurementRow]:
    """The four clip-level ``measurements.csv`` rows (protocol ``muscle``, frame :data:`CLIP_FRAME`).

    A refused clip gives the four rows ``refused`` with the reason; a clip
    with no analysed time has its rate refused ("no analysed time").
    """
    common: dict[str, Any] = dict(
        study_uid=study_uid, series_uid=series_uid, sop_instance_uid=sop_instance_uid, frame=CLIP_FRAME,
        source_file=source_file, protocol="muscle", structure=structure, laterality=laterality,
        mm_per_px=mm_per_px, calibration=calibration,
    )
    names = (
        ("fasciculation_count", "1"),
        ("fasciculation_rate", "/min"),
        ("analysed_seconds", "s"),
        ("excluded_seconds", "s"),
    )
    if not result.measured:
        reason = result.refusal_reason or "not analysed"
        return [
            MeasurementRow(**common, measurement=name, value=None, unit=unit, status=RowStatus.REFUSED, reason=reason)
            for name, unit in names
        ]
    excluded_note = ", ".join(f"{reason} {count} frame(s)" for reason, count in result.exclusions)
    values: dict[str, tuple[float | None, str]] = {
        "fasciculation_count": (float(result.count or 0), ""),
        "fasciculation_rate": (result.rate_per_min, "" if result.rate_per_min is not None else "no analysed time"),
        "analysed_seconds": (result.analysed_seconds, ""),
        "excluded_seconds": (result.excluded_seconds, f"excluded: {excluded_note}" if excluded_note else ""),
    }
    rows = []
    for name, unit in names:
        value, note = values[name]
        status = RowStatus.MEASURED if value is not None else RowStatus.REFUSED
        rows.append(MeasurementRow(**common, measurement=name, value=value, unit=unit, status=status, reason=note))
    return rows
