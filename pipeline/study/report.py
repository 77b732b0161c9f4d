"""The SR of one analysed study, built the same way for every caller (node, batch, analyze)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pipeline.sr.sop import build_measurement_report
from pipeline.sr.sources import SR_SOP_CLASSES, ReportError
from pipeline.study.runner import StudyAnalysis

__all__ = ["build_study_report", "earlier_report"]

logger = logging.getLogger(__name__)


def earlier_report(path: str | Path, study_uid: str, *, new_uid: str = "") -> Dataset | None:
    """The SR at ``path`` when it is an earlier report of the same study (the new one supersedes it).

    Anything missing, unreadable or of another study or class is not a predecessor.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - unreadable: not a predecessor
        return None
    if str(doc.get("StudyInstanceUID", "")) != study_uid or str(doc.get("SOPClassUID", "")) not in SR_SOP_CLASSES:
        return None
    if new_uid and str(doc.get("SOPInstanceUID", "")) == new_uid:
        return None
    return doc


def build_study_report(
    study: StudyAnalysis,
    *,
    previous: Sequence[Dataset] | Dataset | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    reference_files: Sequence[str] = (),
) -> Dataset:
    """The TID 1500 report of ``study`` (PARTIAL when some images were refused).

    A refused image is listed with its reason when its header allows; if a
    refused image's header breaks the document, the report is built from the
    analysed images alone (and says so in the log), so one bad header never
    costs the study its report.

    Values carry their flags and reference intervals and the study its
    findings (:attr:`StudyAnalysis.readings`, :attr:`StudyAnalysis.findings`);
    ``reference_files`` are named in the report's decision-support note.

    Raises
    ------
    ReportError
        Nothing in the study can be reported (no image with a header), or
        the analysed images themselves cannot be encoded.
    """
    images = study.reportable
    if not images:
        raise ReportError(f"study {study.study_uid}: no image could be read well enough to be named in a report")
    kwargs = dict(
        previous=previous,
        sop_instance_uid=sop_instance_uid,
        series_instance_uid=series_instance_uid,
        instance_number=instance_number,
        readings=study.readings,
        findings=study.findings,
        reference_files=reference_files,
    )
    try:
        return build_measurement_report(
            [i.result for i in images], [i.header for i in images if i.header is not None], **kwargs  # type: ignore[arg-type]
        )
    except Exception as exc:  # noqa: BLE001 - retried below without the refused images
        kept = [i for i in images if not i.result.failed]
        if not kept or len(kept) == len(images):
            if isinstance(exc, ReportError):
                raise
            raise ReportError(f"study {study.study_uid}: {type(exc).__name__}: {exc}") from None
        logger.warning("study %s: report built without the refused images: %s: %s", study.study_uid, type(exc).__name__, exc)
        return build_measurement_report(
            [i.result for i in kept], [i.header for i in kept if i.header is not None], **kwargs  # type: ignore[arg-type]
        )
