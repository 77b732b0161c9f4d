"""What the review pages show and what a sign-off carries: small frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Decision",
    "FrameInfo",
    "FrameView",
    "MeasurementDecision",
    "Overlay",
    "ReviewItem",
    "SignOff",
    "StudyDetail",
    "StudyStatus",
    "StudySummary",
    "VerifiedReport",
]


class StudyStatus(str, enum.Enum):
    """Where a study stands, as the list page shows it."""

    PENDING = "pending"  # received or queued, no automated SR yet
    PROCESSED = "processed"  # automated SR written
    SENT = "sent"  # automated SR delivered to every destination
    FAILED = "failed"  # analysis failed, or a result could not be delivered
    VERIFIED = "verified"  # a person signed off the current automated SR


class Decision(str, enum.Enum):
    """A reviewer's decision on one measurement."""

    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True)
class Overlay:
    """One drawn region of a measurement group (SCOORD in image pixels).

    Attributes
    ----------
    kind : str
        ``"contour"`` (closed polyline), ``"caliper"`` (open 2-point line),
        ``"roi"`` (closed polyline of an ROI), ``"line"`` (other open
        polyline), ``"point"``, ``"ellipse"``.
    points : tuple of (float, float)
        DICOM SCOORD points (column, row), top-left corner of the image at (0, 0).
    label : str
        Short text drawn next to it (the values).
    """

    kind: str
    points: tuple[tuple[float, float], ...]
    label: str = ""


@dataclass(frozen=True)
class ReviewItem:
    """One reviewable measurement: a NUM item of the automated SR.

    Attributes
    ----------
    id : str
        ``g<group>.m<measurement>`` (1-based, document order); stable for a
        given SR document.
    group : str
        The group's Tracking Identifier (what and where).
    tracking_uid : str
        The group's Tracking Unique Identifier.
    name : str
        Concept with derivation, e.g. ``"Echogenicity (Mean)"``.
    value : float or None
        The number (``None`` when the NUM carries no value).
    unit : str
        UCUM unit code (``mm``, ``mm2``, ``1``).
    finding, site, laterality : str
        From the group (meanings).
    sop_instance_uid : str
        The source image.
    frame_number : int
        1-based frame (1 for single-frame images).
    """

    id: str
    group: str
    tracking_uid: str
    name: str
    value: float | None
    unit: str
    finding: str = ""
    site: str = ""
    laterality: str = ""
    sop_instance_uid: str = ""
    frame_number: int = 1

    @property
    def value_text(self) -> str:
        """The value as shown (4 significant digits)."""
        return "" if self.value is None else f"{self.value:.4g}"

    @property
    def unit_text(self) -> str:
        """The unit as shown (``mm²`` for ``mm2``, nothing for ``1``)."""
        return {"mm2": "mm²", "1": ""}.get(self.unit, self.unit)

    def describe(self) -> str:
        """One line naming the measurement, its value and its group."""
        value = f"{self.value_text} {self.unit}".strip() if self.value is not None else "no value"
        return f"{self.name} = {value} ({self.group})"


@dataclass(frozen=True)
class FrameInfo:
    """Details of one analysed frame that are not in the SR.

    Attributes
    ----------
    source_file : str
        The input file as the analysis saw it (may be relative).
    series_description, laterality : str
        From the source image header (laterality also from the SR).
    mm_per_px : float or None
        Calibration; ``None`` when uncalibrated or unknown.
    calibration : str
        How it was calibrated (``ultrasound_region``, ``pixel_spacing``, ...).
    confidence : float or None
        The algorithm's confidence, when recorded.
    flags : tuple of str
        Refusals and notes ("no nerve found", "calibrated from Pixel Spacing", ...).
    """

    source_file: str = ""
    series_description: str = ""
    laterality: str = ""
    mm_per_px: float | None = None
    calibration: str = ""
    confidence: float | None = None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FrameView:
    """One analysed frame on the study page."""

    sop_instance_uid: str
    frame_number: int
    label: str
    items: tuple[ReviewItem, ...]
    overlays: tuple[Overlay, ...]
    info: FrameInfo
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<sop>/<frame>`` as used in the overlay image URL."""
        return f"{self.sop_instance_uid}/{self.frame_number}"


@dataclass(frozen=True)
class VerifiedReport:
    """A verified SR already written for the study."""

    sop_instance_uid: str
    reviewer: str
    organisation: str
    verified_at: str
    predecessors: tuple[str, ...]
    path: str
    delivery: str = ""


@dataclass(frozen=True)
class StudySummary:
    """One row of the study list."""

    study_uid: str
    status: StudyStatus
    study_date: str = ""
    protocols: tuple[str, ...] = ()
    patient_id: str = ""
    study_description: str = ""
    measurements: int = 0
    automated_sr_uid: str = ""
    detail: str = ""

    @property
    def study_date_iso(self) -> str:
        """``YYYY-MM-DD`` (empty when unknown)."""
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) >= 8 and d[:8].isdigit() else ""


@dataclass(frozen=True)
class StudyDetail:
    """Everything the study page shows."""

    summary: StudySummary
    automated_sr_uid: str
    automated_sr_path: str
    completion_flag: str
    frames: tuple[FrameView, ...]
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    verified: tuple[VerifiedReport, ...] = ()

    @property
    def items(self) -> tuple[ReviewItem, ...]:
        return tuple(item for frame in self.frames for item in frame.items)


@dataclass(frozen=True)
class MeasurementDecision:
    """The reviewer's decision on one measurement, with an optional comment."""

    item_id: str
    decision: Decision
    comment: str = ""


@dataclass(frozen=True)
class SignOff:
    """A checked sign-off: who verified what."""

    study_uid: str
    automated_sr_uid: str
    reviewer: str
    organisation: str
    comment: str
    decisions: tuple[MeasurementDecision, ...]
    login: str = ""

    @property
    def rejected(self) -> tuple[MeasurementDecision, ...]:
        return tuple(d for d in self.decisions if d.decision is Decision.REJECT)

    @property
    def accepted(self) -> tuple[MeasurementDecision, ...]:
        return tuple(d for d in self.decisions if d.decision is Decision.ACCEPT)
