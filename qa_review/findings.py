"""The reviewable findings of an SR: one per measurement group (nerve contour, caliper, ROI).

A reviewer judges what the software drew, not each number derived from it:
the area, perimeter, axes and echogenicity of one contour are one finding.
A finding's id is ``g<group>`` (1-based, the order of
:func:`qa_review.items.reviewable_report`), so ``g3`` holds the items
``g3.m1``, ``g3.m2``...; groups without a number (an image that was not
measured) are not findings.
"""

from __future__ import annotations

from pipeline.sr.reader import MeasurementGroup
from qa_review.codes import CORRECTED_BY_PREFIX
from qa_review.items import ReviewableReport, frame_of, group_overlays
from qa_review.model import Finding

__all__ = ["finding_of_item", "findings_of"]

_CORRECTABLE = ("contour", "caliper", "roi")


def finding_of_item(item_id: str) -> str:
    """``g3`` for the measurement id ``g3.m2``."""
    return item_id.split(".", 1)[0]


def _corrected_by(group: MeasurementGroup) -> str:
    notes = [e.value for e in group.evaluations if e.value.startswith(CORRECTED_BY_PREFIX)]
    return notes[-1][len(CORRECTED_BY_PREFIX):].split(":", 1)[0].strip() if notes else ""


def findings_of(reviewable: ReviewableReport) -> tuple[Finding, ...]:
    """Every finding of the document, in document order."""
    out = []
    for index, group in enumerate(reviewable.report.groups):
        fid = f"g{index + 1}"
        items = tuple(i for i in reviewable.items if finding_of_item(i.id) == fid)
        if not items:
            continue
        overlay = next((o for o in group_overlays(group) if o.kind in _CORRECTABLE), None)
        sop, frame = frame_of(group.images[0] if group.images else None)
        first = items[0]
        out.append(
            Finding(
                id=fid,
                label=first.group,
                tracking_uid=first.tracking_uid,
                kind=overlay.kind if overlay is not None else "values",
                points=overlay.points if overlay is not None else (),
                items=items,
                sop_instance_uid=sop or first.sop_instance_uid,
                frame_number=frame if sop else first.frame_number,
                site=first.site,
                laterality=first.laterality,
                corrected_by=_corrected_by(group),
            )
        )
    return tuple(out)
