"""One study's page model, built from its automated SR and whatever else is known.

Shared by both places results live (:mod:`qa_review.outdir`,
:mod:`qa_review.archive`): they supply the SR and a function giving the
non-SR facts of a frame; this module groups the measurements by source
frame, pairs them with the regions to draw and merges the facts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom.dataset import Dataset

from pipeline.sr.codes import SUBCUTANEOUS_TISSUE
from pipeline.sr.reader import MeasurementGroup, MeasurementReport
from qa_review.fasciculation import is_fasciculation_group
from qa_review.findings import findings_of
from qa_review.items import ReviewableReport, frame_of, group_confidence, group_overlays
from qa_review.model import FrameInfo, FrameView, Overlay, ReviewItem, StudyStatus, StudySummary, VerifiedReport
from qa_review.studyfindings import is_study_finding

__all__ = [
    "SidePair",
    "frame_views",
    "laterality_pairs",
    "merge_info",
    "protocols_of",
    "readable_name",
    "structures_of",
    "study_summary",
    "verified_report",
]

_PROTOCOL_OF_FINDING = {("SCT", "84782009"): "nerve", ("SCT", "91728009"): "nerve", ("SCT", "127954009"): "muscle"}


def protocols_of(report: MeasurementReport, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Protocols of a study from its groups' findings (nerve, muscle) plus ``extra``."""
    found: list[str] = []
    for group in report.groups:
        name = _PROTOCOL_OF_FINDING.get(group.finding.key) if group.finding is not None else None
        if name and name not in found:
            found.append(name)
    for name in extra:
        if name and name not in found:
            found.append(name)
    return tuple(found)


def structures_of(reviewable: ReviewableReport) -> tuple[str, ...]:
    """The measured structures with their side ("right median nerve"), in document order."""
    found: list[str] = []
    for group in reviewable.report.groups:
        if not group.measurements:
            continue
        site = group.finding_sites[0] if group.finding_sites else None
        if site is None:
            continue
        side = str(site.laterality).lower() if site.laterality is not None else ""
        name = f"{side} {site.site}".strip()
        if name not in found:
            found.append(name)
    return tuple(found)


def study_summary(
    study_uid: str,
    status: StudyStatus,
    reviewable: ReviewableReport | None,
    *,
    extra_protocols: Sequence[str] = (),
    detail: str = "",
    header: Dataset | None = None,
    flags: int | None = None,
) -> StudySummary:
    """The list row of a study (``reviewable`` is its automated SR, if any).

    ``flags`` is the number of measurements flagged outside their reference
    (``None`` when the results record no reference flags).
    """
    source = reviewable.dataset if reviewable is not None else header
    return StudySummary(
        study_uid=study_uid,
        status=status,
        study_date=str(source.get("StudyDate", "") or "") if source is not None else "",
        protocols=protocols_of(reviewable.report, extra_protocols) if reviewable is not None else tuple(extra_protocols),
        patient_id=str(source.get("PatientID", "") or "") if source is not None else "",
        study_description=str(source.get("StudyDescription", "") or "") if source is not None else "",
        measurements=len(reviewable.items) if reviewable is not None else 0,
        automated_sr_uid=str(reviewable.dataset.SOPInstanceUID) if reviewable is not None else "",
        detail=detail,
        patient_name=str(source.get("PatientName", "") or "") if source is not None else "",
        structures=structures_of(reviewable) if reviewable is not None else (),
        flags=flags,
        findings=len(findings_of(reviewable)) if reviewable is not None else 0,
    )


def verified_report(dataset: Dataset, path: str, delivery: str = "") -> VerifiedReport:
    """What the study page says about a verified SR already written."""
    observer = (dataset.get("VerifyingObserverSequence") or [Dataset()])[0]
    when = str(observer.get("VerificationDateTime", "") or "")
    shown = f"{when[:4]}-{when[4:6]}-{when[6:8]} {when[8:10]}:{when[10:12]}" if len(when) >= 12 else when
    predecessors = tuple(
        str(sop.ReferencedSOPInstanceUID)
        for study in dataset.get("PredecessorDocumentsSequence") or []
        for series in study.get("ReferencedSeriesSequence") or []
        for sop in series.get("ReferencedSOPSequence") or []
    )
    return VerifiedReport(
        sop_instance_uid=str(dataset.SOPInstanceUID),
        reviewer=str(observer.get("VerifyingObserverName", "") or ""),
        organisation=str(observer.get("VerifyingOrganization", "") or ""),
        verified_at=shown,
        predecessors=predecessors,
        path=path,
        delivery=delivery,
        sort_key=f"{when}{int(dataset.get('InstanceNumber', 0) or 0):06d}",
    )


def readable_name(info: FrameInfo, sop_instance_uid: str) -> str:
    """A name a person recognises: the source file name, unless it is only a UID (a node's
    inbox names files by SOP Instance UID); then the series description; else the UID."""
    name = Path(info.source_file).name if info.source_file else ""
    stem = name.removesuffix(".dcm")
    uid_like = not stem or all(c.isdigit() or c in "._-" for c in stem) or sop_instance_uid in stem
    if name and not uid_like:
        return name
    if info.series_description:
        return info.series_description
    return name or sop_instance_uid


def merge_info(*infos: FrameInfo | None, laterality: str = "") -> FrameInfo:
    """The first non-empty value of each field over ``infos``; flags from all of them."""
    present = [i for i in infos if i is not None]
    merged = FrameInfo()
    for field_name in ("source_file", "series_description", "laterality", "mm_per_px", "calibration", "confidence"):
        value = next((getattr(i, field_name) for i in present if getattr(i, field_name) not in (None, "")), None)
        if value is not None:
            merged = replace(merged, **{field_name: value})
    if laterality:
        merged = replace(merged, laterality=laterality)
    flags: list[str] = []
    for info in present:
        flags.extend(f for f in info.flags if f not in flags)
    return replace(merged, flags=tuple(flags))


def _label(group: MeasurementGroup, items: Sequence[ReviewItem]) -> str:
    if not items or items[0].value is None:
        return ""
    first = items[0]
    # Two calipers on a muscle frame: the subcutaneous one says which layer it measures.
    name = "Subcutaneous thickness" if group.finding is not None and group.finding.matches(SUBCUTANEOUS_TISSUE) else first.name
    return f"{name} {first.value_text} {first.unit if first.unit != '1' else ''}".strip()


def frame_views(
    reviewable: ReviewableReport,
    info_for: Callable[[str, int], FrameInfo],
) -> tuple[FrameView, ...]:
    """The study's frames, in document order, each with its measurements, regions and facts.

    Parameters
    ----------
    reviewable : ReviewableReport
        The automated SR.
    info_for : callable (SOP Instance UID, frame number) -> FrameInfo
        Facts from outside the SR (tables, source header).
    """
    order: list[tuple[str, int]] = []
    items: dict[tuple[str, int], list[ReviewItem]] = {}
    overlays: dict[tuple[str, int], list[Overlay]] = {}
    notes: dict[tuple[str, int], list[str]] = {}
    sides: dict[tuple[str, int], str] = {}
    confidence: dict[tuple[str, int], float] = {}
    for index, group in enumerate(reviewable.report.groups):
        if is_study_finding(group) or is_fasciculation_group(group):
            continue  # shown in their own sections (qa_review.studyfindings, qa_review.fasciculation)
        refs = group.images
        key = frame_of(refs[0] if refs else None)
        if key not in items:
            order.append(key)
            items[key], overlays[key], notes[key] = [], [], []
        own = [i for i in reviewable.items if i.id.startswith(f"g{index + 1}.")]
        items[key].extend(own)
        overlays[key].extend(group_overlays(group, _label(group, own)))
        for evaluation in group.evaluations:
            if evaluation.value and evaluation.value not in notes[key]:
                notes[key].append(evaluation.value)
        site = group.finding_sites[0] if group.finding_sites else None
        if site is not None and site.laterality is not None:
            sides.setdefault(key, str(site.laterality))
        # The SR's own confidence (the first group's, as the tables give the first row's) where the tables
        # have none (an archive).
        value = group_confidence(group)
        if value is not None:
            confidence.setdefault(key, value)
    findings = findings_of(reviewable)
    views = []
    for key in order:
        sop, frame = key
        info = merge_info(info_for(sop, frame), FrameInfo(confidence=confidence.get(key)), laterality=sides.get(key, ""))
        name = readable_name(info, sop)
        views.append(
            FrameView(
                sop_instance_uid=sop,
                frame_number=frame,
                label=f"{name}, frame {frame}",
                items=tuple(items[key]),
                overlays=tuple(overlays[key]),
                info=info,
                notes=tuple(notes[key]),
                findings=tuple(f for f in findings if (f.sop_instance_uid, f.frame_number) == key),
            )
        )
    return tuple(views)


@dataclass(frozen=True)
class SidePair:
    """The same structure at the same level measured on both sides (first frame of each side)."""

    site: str
    level: str
    left: FrameView
    right: FrameView

    @property
    def label(self) -> str:
        """``median nerve at wrist region`` (the structure alone when no level is known)."""
        return f"{self.site} at {self.level.lower()}" if self.level else self.site

    def values(self, frame: FrameView) -> tuple[ReviewItem, ...]:
        """The values of this structure and level on one of the two frames."""
        return tuple(i for i in frame.items if i.site == self.site and i.level == self.level)


def laterality_pairs(frames: Sequence[FrameView]) -> tuple[SidePair, ...]:
    """Each structure measured on both sides *at the same level*.

    The level is the Finding Site's topographical modifier (``Wrist region``);
    a right wrist and a left forearm are not a pair. Two sides without a level
    pair as the pipeline's right-minus-left does (same structure, same level:
    here none).
    """
    by_place: dict[tuple[str, str], dict[str, FrameView]] = {}
    for frame in frames:
        for item in frame.items:
            side = item.laterality.lower()
            if side in ("left", "right") and item.site:
                by_place.setdefault((item.site, item.level), {}).setdefault(side, frame)
    return tuple(
        SidePair(site=site, level=level, left=sides["left"], right=sides["right"])
        for (site, level), sides in by_place.items()
        if len(sides) == 2
    )
