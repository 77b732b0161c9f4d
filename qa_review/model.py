"""What the review pages show and what a sign-off carries: small frozen dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from qa_review.flags import ValueFlag

__all__ = [
    "REJECT_REASONS",
    "Correction",
    "Decision",
    "Finding",
    "FindingDecision",
    "FrameInfo",
    "FrameView",
    "Overlay",
    "ReviewItem",
    "SignOff",
    "StudyDetail",
    "StudyStatus",
    "StudySummary",
    "ReviewState",
    "VerifiedReport",
]

#: The short list a reject reason is chosen from (free text may add to it).
REJECT_REASONS = (
    "wrong structure",
    "contour or caliper misplaced",
    "image quality too poor to measure",
    "artefact or annotation measured",
    "wrong side or site",
    "other",
)


class StudyStatus(str, enum.Enum):
    """Where a study stands, as the list page shows it."""

    PENDING = "pending"  # received or queued, no automated SR yet
    PROCESSED = "processed"  # automated SR written
    SENT = "sent"  # automated SR delivered to every destination
    FAILED = "failed"  # analysis failed, or a result could not be delivered
    VERIFIED = "verified"  # a person signed off the current automated SR


class ReviewState(str, enum.Enum):
    """Where a study stands with its reviewers (the list's second status)."""

    AUTOMATED = "automated"  # nobody signed the current automated SR off
    VERIFIED = "verified"  # signed off, no finding corrected
    CORRECTED = "corrected"  # signed off with at least one finding corrected


class Decision(str, enum.Enum):
    """A reviewer's decision on one finding (or, in older forms, one measurement)."""

    ACCEPT = "accept"
    REJECT = "reject"
    CORRECT = "correct"


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
    level : str
        The Finding Site's topographical modifier (``Wrist region``); empty when unknown.
    flag : ValueFlag or None
        The value against its reference, as the SR states it (``None``: not read).
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
    level: str = ""
    flag: ValueFlag | None = None

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
class Finding:
    """One reviewable finding: a measurement group (a nerve contour, a caliper, an ROI).

    The reviewer decides per finding, not per derived value: the area,
    perimeter, axes and echogenicity of one contour stand or fall together.

    Attributes
    ----------
    id : str
        ``g<group>`` (1-based, document order of the document under review).
    label : str
        The group's Tracking Identifier (what and where).
    tracking_uid : str
        The group's Tracking Unique Identifier (stable across report versions).
    kind : str
        ``"contour"``, ``"caliper"``, ``"roi"`` (correctable) or ``"values"``.
    points : tuple of (float, float)
        The region drawn (DICOM SCOORD, (column, row)); empty for ``"values"``.
    items : tuple of ReviewItem
        The values derived from it.
    sop_instance_uid : str
        The source image.
    frame_number : int
        1-based frame.
    site, laterality : str
        Finding site and side (meanings).
    corrected_by : str
        Who corrected it in an earlier sign-off (empty when never corrected).
    """

    id: str
    label: str
    tracking_uid: str
    kind: str
    points: tuple[tuple[float, float], ...]
    items: tuple[ReviewItem, ...]
    sop_instance_uid: str = ""
    frame_number: int = 1
    site: str = ""
    laterality: str = ""
    corrected_by: str = ""

    @property
    def correctable(self) -> bool:
        """Whether the reviewer can redraw or move it (a contour, caliper or ROI with its points)."""
        return self.kind in ("contour", "caliper", "roi") and len(self.points) >= 2

    def describe(self) -> str:
        """One line naming the finding and its values."""
        values = ", ".join(
            f"{i.name} {i.value_text} {i.unit_text}".strip() for i in self.items if i.value is not None
        )
        return f"{self.label}: {values}" if values else self.label


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
    findings: tuple[Finding, ...] = ()
    number_of_frames: int = 1

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
    sort_key: str = ""


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
    patient_name: str = ""
    structures: tuple[str, ...] = ()
    flags: int | None = None
    findings: int = 0
    review: ReviewState = ReviewState.AUTOMATED

    @property
    def patient_name_text(self) -> str:
        """The patient name as people write it (``Family, Given``)."""
        parts = [p for p in self.patient_name.split("^") if p]
        return ", ".join(parts[:2]) + (" " + " ".join(parts[2:]) if len(parts) > 2 else "")

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

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(finding for frame in self.frames for finding in frame.findings)

    def frame(self, sop_instance_uid: str, frame_number: int) -> FrameView | None:
        """The view of one frame of an instance of the study (``None`` when the report has none)."""
        return next(
            (f for f in self.frames if f.sop_instance_uid == sop_instance_uid and f.frame_number == frame_number), None
        )


@dataclass(frozen=True)
class Correction:
    """A finding the reviewer redrew or moved, with the values recomputed from it.

    Attributes
    ----------
    points : tuple of (float, float)
        The new region, DICOM SCOORD (column, row) as drawn in the browser.
    values : tuple of (str, float, str)
        (measurement name as :attr:`ReviewItem.name`, new value, UCUM unit).
    replaced : tuple of (str, float or None, str)
        The values of the finding before the correction (name, value, unit).
    how : str
        What the reviewer did ("contour redrawn", "caliper ends moved", "ROI moved").
    dropped : tuple of str
        Names of values the new region cannot give (the mean thickness over the central half):
        removed from the corrected group, as is the group's confidence.
    """

    points: tuple[tuple[float, float], ...]
    values: tuple[tuple[str, float, str], ...]
    replaced: tuple[tuple[str, float | None, str], ...] = ()
    how: str = ""
    dropped: tuple[str, ...] = ()

    def describe(self) -> str:
        """``Area 6.873 mm2 -> 5.2 mm2, ...``."""
        before = {name: (value, unit) for name, value, unit in self.replaced}
        parts = []
        for name, value, unit in self.values:
            old = before.get(name, (None, unit))[0]
            old_text = "none" if old is None else f"{old:.4g}"
            parts.append(f"{name} {old_text} -> {value:.4g} {unit if unit != '1' else ''}".strip())
        parts.extend(f"{name} removed (not measurable on the corrected region)" for name in self.dropped)
        return "; ".join(parts)


@dataclass(frozen=True)
class FindingDecision:
    """The reviewer's decision on one finding.

    Attributes
    ----------
    finding_id : str
        ``g<n>`` of the document under review.
    decision : Decision
        accept, reject or correct.
    reason : str
        For a rejection: one of :data:`REJECT_REASONS`.
    comment : str
        Free text.
    correction : Correction or None
        For ``correct``: the new region and values.
    """

    finding_id: str
    decision: Decision
    reason: str = ""
    comment: str = ""
    correction: Correction | None = None

    @property
    def why(self) -> str:
        """Reason and comment as one phrase."""
        return "; ".join(p for p in (self.reason, self.comment) if p) or "no reason given"


@dataclass(frozen=True)
class SignOff:
    """A checked sign-off: who verified which version, and what they decided per finding.

    Attributes
    ----------
    base_uid : str
        The document version the form was made on: the latest verified SR of
        the automated SR, or the automated SR when none was signed yet.
    """

    study_uid: str
    automated_sr_uid: str
    reviewer: str
    organisation: str
    comment: str
    decisions: tuple[FindingDecision, ...]
    login: str = ""
    base_uid: str = ""

    @property
    def rejected(self) -> tuple[FindingDecision, ...]:
        return tuple(d for d in self.decisions if d.decision is Decision.REJECT)

    @property
    def accepted(self) -> tuple[FindingDecision, ...]:
        return tuple(d for d in self.decisions if d.decision is Decision.ACCEPT)

    @property
    def corrected(self) -> tuple[FindingDecision, ...]:
        return tuple(d for d in self.decisions if d.decision is Decision.CORRECT)
