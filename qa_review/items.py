"""The reviewable measurements of an SR document, with stable ids.

A measurement is one NUM content item inside a Measurement Group (DCM
125007). Its id is ``g<group>.m<measurement>`` (1-based, document order),
found by walking the content tree with the reader's own walker
(:mod:`pipeline.sr.walk`), so the ids match
the reader's groups and measurements one to one (checked: a document where
they do not is refused). The same walk gives the dataset items themselves,
which :mod:`qa_review.verified` removes when a measurement is rejected.

A group's confidence NUM (local code ``CONFIDENCE``, :data:`pipeline.sr.codes.CONFIDENCE`) is not
a reviewable value: it is the algorithm's confidence in the whole group, shown as the frame's
confidence (:func:`group_confidence`). It keeps its place in the numbering, so the ids of the other
items are the same with or without it.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from pipeline.sr.codes import CONFIDENCE, NERVE, NERVE_BEFORE_2026_11, concept_key
from pipeline.sr.reader import (
    ImageReference,
    MeasurementGroup,
    MeasurementReport,
    NumericMeasurement,
    read_measurement_report,
)
from pipeline.sr.walk import children, measurement_group_items, numeric_items
from qa_review.flags import flag_of
from qa_review.model import Overlay, ReviewItem

__all__ = [
    "GroupSlot",
    "ReviewableReport",
    "UnreviewableReportError",
    "frame_of",
    "group_confidence",
    "group_overlays",
    "is_confidence",
    "reviewable_report",
]

# Peripheral nerve (CONTRACT.md section 5) and the tissue-type code of earlier reports.
_NERVE = {concept_key(NERVE), concept_key(NERVE_BEFORE_2026_11)}


class UnreviewableReportError(ValueError):
    """The SR's measurements cannot be identified reliably (the message says why)."""


@dataclass(frozen=True)
class GroupSlot:
    """Where one measurement group and its NUM items sit in the dataset.

    Attributes
    ----------
    parent : MutableSequence of Dataset
        The Content Sequence holding the group container.
    group : Dataset
        The group container item.
    measurements : tuple of (MutableSequence, Dataset)
        For each NUM item of the group, in reader order: the Content
        Sequence holding it and the item.
    """

    parent: MutableSequence[Dataset]
    group: Dataset
    measurements: tuple[tuple[MutableSequence[Dataset], Dataset], ...]


@dataclass(frozen=True)
class ReviewableReport:
    """An SR document read for review.

    Attributes
    ----------
    dataset : Dataset
        The document (items in ``slots`` point into it).
    report : MeasurementReport
        What :func:`read_measurement_report` reads from it.
    slots : tuple of GroupSlot
        One per ``report.groups`` entry, same order.
    items : tuple of ReviewItem
        Every reviewable measurement, document order.
    """

    dataset: Dataset
    report: MeasurementReport
    slots: tuple[GroupSlot, ...]
    items: tuple[ReviewItem, ...]

    def item(self, item_id: str) -> ReviewItem | None:
        return next((i for i in self.items if i.id == item_id), None)

    def location(self, item_id: str) -> tuple[int, int]:
        """0-based (group, measurement) indices of an id of this report.

        Raises
        ------
        KeyError
            ``item_id`` is not a measurement of this report.
        """
        if self.item(item_id) is None:
            raise KeyError(item_id)
        group, measurement = item_id[1:].split(".m")
        return int(group) - 1, int(measurement) - 1


def _image_of(group: MeasurementGroup, measurement: NumericMeasurement | None) -> ImageReference | None:
    refs: list[ImageReference] = []
    if measurement is not None:
        refs.extend(measurement.images)
        refs.extend(c.image for c in measurement.coordinates if c.image is not None)
    refs.extend(group.images)
    return refs[0] if refs else None


def frame_of(ref: ImageReference | None) -> tuple[str, int]:
    """(SOP Instance UID, 1-based frame) of an image reference (frame 1 when none is named)."""
    if ref is None:
        return "", 1
    return ref.sop_instance_uid, (ref.frame_numbers[0] if ref.frame_numbers else 1)


def is_confidence(measurement: NumericMeasurement) -> bool:
    """The NUM is a group's confidence (not a reviewable value)."""
    return measurement.name.matches(CONFIDENCE)


def group_confidence(group: MeasurementGroup) -> float | None:
    """The algorithm's confidence (0-1) the group carries, ``None`` when it has none (older reports)."""
    return next((m.value for m in group.measurements if is_confidence(m) and m.value is not None), None)


def _review_item(gi: int, mi: int, group: MeasurementGroup, m: NumericMeasurement) -> ReviewItem:
    site = group.finding_sites[0] if group.finding_sites else None
    if site is None and m.finding_sites:
        site = m.finding_sites[0]
    sop, frame = frame_of(_image_of(group, m))
    return ReviewItem(
        id=f"g{gi + 1}.m{mi + 1}",
        group=group.tracking_identifier or group.tracking_uid or f"group {gi + 1}",
        tracking_uid=group.tracking_uid or "",
        name=m.label,
        value=m.value,
        unit=m.unit.value if m.unit is not None else "",
        finding=str(group.finding) if group.finding is not None else "",
        site=str(site.site) if site is not None else "",
        laterality=str(site.laterality) if site is not None and site.laterality is not None else "",
        sop_instance_uid=sop,
        frame_number=frame,
        level=str(site.modifier) if site is not None and site.modifier is not None else "",
        flag=flag_of(m, group),
    )


def group_overlays(group: MeasurementGroup, label: str = "") -> tuple[Overlay, ...]:
    """The 2D regions of a group as overlays to draw."""
    out = []
    nerve = group.finding is not None and group.finding.key in _NERVE
    for region in group.regions:
        if region.is_3d or not region.points:
            continue
        points = tuple((float(p[0]), float(p[1])) for p in region.points)
        kind = region.graphic_type.upper()
        if kind in ("POLYLINE", "POLYGON"):
            closed = kind == "POLYGON" or (len(points) > 2 and points[0] == points[-1])
            if closed:
                kind_name = "contour" if nerve else "roi"
            else:
                kind_name = "caliper" if len(points) == 2 else "line"
        elif kind in ("POINT", "MULTIPOINT"):
            kind_name = "point"
        elif kind in ("ELLIPSE", "CIRCLE"):
            kind_name = "ellipse"
        else:
            continue
        out.append(Overlay(kind=kind_name, points=points, label=label))
    return tuple(out)


def reviewable_report(dataset: Dataset) -> ReviewableReport:
    """Read an SR document for review: the reader's view plus the dataset slots and ids.

    Raises
    ------
    pipeline.sr.reader.NotStructuredReportError
        Not an SR document.
    UnreviewableReportError
        The walk over the dataset disagrees with the reader (a layout this
        module does not handle): refusing is safer than removing the wrong item.
    """
    report = read_measurement_report(dataset)
    found = list(measurement_group_items(children(dataset)))
    if len(found) != len(report.groups):
        raise UnreviewableReportError(
            f"found {len(found)} measurement group(s) but the reader sees {len(report.groups)}"
        )
    slots: list[GroupSlot] = []
    items: list[ReviewItem] = []
    for gi, ((parent, group_item), group) in enumerate(zip(found, report.groups, strict=True)):
        numbers = tuple(numeric_items(group_item))
        if len(numbers) != len(group.measurements):
            raise UnreviewableReportError(
                f"group {gi + 1}: found {len(numbers)} NUM item(s) but the reader sees {len(group.measurements)}"
            )
        slots.append(GroupSlot(parent=parent, group=group_item, measurements=numbers))
        items.extend(_review_item(gi, mi, group, m) for mi, m in enumerate(group.measurements) if not is_confidence(m))
    return ReviewableReport(dataset=dataset, report=report, slots=tuple(slots), items=tuple(items))
