"""The verified SR: the automated SR as the reviewer signed it off.

:func:`build_verified_report` copies the automated document and

- keeps the accepted measurements only: a rejected NUM item is removed from
  its group, a group whose measurements were all rejected is removed whole
  (and the Imaging Measurements container when nothing is left in it);
- lists each rejected measurement (what, value, group, the reviewer's
  comment) as a TEXT item under Qualitative Evaluations (TID 1500 row 12),
  and the reviewer's comments likewise;
- sets Verification Flag VERIFIED with the Verifying Observer Sequence (name,
  organisation, date/time), Completion Flag COMPLETE, Preliminary Flag FINAL,
  a new SOP Instance UID in a new series, new content date/time, and
  Predecessor Documents pointing to the automated SR (and to earlier
  sign-offs of it, which this one supersedes).

DICOM permits VERIFIED only with COMPLETE (PS3.3 C.17.2). The reviewer signs
the document as it stands. When the automated SR was PARTIAL (images not
measured), its TEXT items naming those images stay under Qualitative
Evaluations, and the Completion Flag Description says so.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import MutableSequence, Sequence

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from pipeline.sr.reader import CodedValue
from qa_review import codes
from qa_review.items import ReviewableReport, reviewable_report
from qa_review.model import Decision, SignOff

__all__ = [
    "PARTIAL_NOTE",
    "SERIES_DESCRIPTION",
    "VERIFIED_SERIES_NUMBER",
    "VerificationError",
    "build_verified_report",
]

VERIFIED_SERIES_NUMBER = 902
SERIES_DESCRIPTION = "mskus measurements (verified)"
#: Completion Flag Description of a verified SR whose automated SR was PARTIAL (LO: at most 64).
PARTIAL_NOTE = "verified as is; unmeasured images: see Qualitative Evaluations"
_IMAGING_MEASUREMENTS = ("DCM", "126010")
_QUALITATIVE = ("UMLS", "C0034375")


class VerificationError(ValueError):
    """The sign-off does not fit the document (the message says why)."""


def _key(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    return CodedValue(str(seq[0].get("CodeValue", "")), str(seq[0].get("CodingSchemeDesignator", "")), "").key


def _remove(parent: MutableSequence[Dataset], item: Dataset) -> None:
    """Remove ``item`` itself (by identity: equal-looking items may exist) from ``parent``."""
    index = next(i for i, candidate in enumerate(parent) if candidate is item)
    del parent[index]


def _check_decisions(reviewable: ReviewableReport, signoff: SignOff) -> None:
    ids = [d.item_id for d in signoff.decisions]
    known = {item.id for item in reviewable.items}
    if len(set(ids)) != len(ids):
        raise VerificationError("a measurement has more than one decision")
    unknown = sorted(set(ids) - known)
    if unknown:
        raise VerificationError(f"measurement {unknown[0]} is not in the automated SR")
    missing = sorted(known - set(ids))
    if missing:
        raise VerificationError(f"no decision for measurement {missing[0]}")


def _drop_rejected(reviewable: ReviewableReport, signoff: SignOff) -> None:
    rejected: dict[int, set[int]] = {}
    for decision in signoff.rejected:
        group, measurement = reviewable.location(decision.item_id)
        rejected.setdefault(group, set()).add(measurement)
    for group_index, measurements in rejected.items():
        slot = reviewable.slots[group_index]
        if len(measurements) == len(slot.measurements):
            _remove(slot.parent, slot.group)
            continue
        for index in sorted(measurements, reverse=True):
            parent, item = slot.measurements[index]
            _remove(parent, item)


def _drop_empty_measurements_container(document: Dataset) -> None:
    root = document.ContentSequence
    for item in list(root):
        if _key(item) == _IMAGING_MEASUREMENTS and not item.get("ContentSequence"):
            _remove(root, item)


def _text(name, value: str) -> Dataset:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _evaluation_texts(reviewable: ReviewableReport, signoff: SignOff) -> list[Dataset]:
    texts = []
    for decision in signoff.decisions:
        item = reviewable.item(decision.item_id)
        assert item is not None
        if decision.decision is Decision.REJECT:
            why = decision.comment or "no comment"
            texts.append(_text(codes.REJECTED_MEASUREMENT, f"rejected: {item.describe()}; comment: {why}"))
        elif decision.comment:
            texts.append(_text(codes.COMMENT, f"accepted: {item.describe()}; comment: {decision.comment}"))
    if signoff.comment:
        texts.append(_text(codes.COMMENT, signoff.comment))
    return texts


def _add_evaluations(document: Dataset, texts: Sequence[Dataset]) -> None:
    if not texts:
        return
    root = document.ContentSequence
    container = next((i for i in root if _key(i) == _QUALITATIVE and i.get("ValueType") == "CONTAINER"), None)
    if container is None:
        container = hd.sr.ContainerContentItem(
            name=codes.QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        container.ContentSequence = DicomSequence([])
        root.append(container)
    elif "ContentSequence" not in container:
        container.ContentSequence = DicomSequence([])
    container.ContentSequence.extend(texts)


def _predecessors(study_uid: str, documents: Sequence[Dataset]) -> DicomSequence:
    series: dict[str, list[Dataset]] = {}
    for doc in documents:
        ref = Dataset()
        ref.ReferencedSOPClassUID = doc.SOPClassUID
        ref.ReferencedSOPInstanceUID = doc.SOPInstanceUID
        series.setdefault(str(doc.SeriesInstanceUID), []).append(ref)
    study = Dataset()
    study.StudyInstanceUID = study_uid
    items = []
    for series_uid, refs in series.items():
        item = Dataset()
        item.SeriesInstanceUID = series_uid
        item.ReferencedSOPSequence = DicomSequence(refs)
        items.append(item)
    study.ReferencedSeriesSequence = DicomSequence(items)
    return DicomSequence([study])


def _texts_need_utf8(document: Dataset, texts: Sequence[str]) -> bool:
    declared = document.get("SpecificCharacterSet")
    if declared in ("ISO_IR 192",) or (isinstance(declared, (list, tuple)) and "ISO_IR 192" in declared):
        return False
    return any(not text.isascii() for text in texts)


def build_verified_report(
    automated: Dataset,
    signoff: SignOff,
    *,
    supersedes: Sequence[Dataset] = (),
    now: dt.datetime | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """The verified SR for ``signoff`` of the ``automated`` SR.

    Parameters
    ----------
    automated : Dataset
        The automated (UNVERIFIED) SR document the reviewer saw; not changed.
    signoff : SignOff
        Reviewer, organisation, comment and one decision per measurement
        (ids of :func:`qa_review.items.reviewable_report` on ``automated``).
    supersedes : sequence of Dataset
        Earlier verified documents of the same automated SR; listed as
        predecessors with it.
    now : datetime, optional
        Verification date/time (default: now, local time with its offset).
    sop_instance_uid, series_instance_uid : str, optional
        Generated when not given.
    instance_number : int
        Instance Number in the verified series.

    Returns
    -------
    Dataset
        A Comprehensive (3D) SR ready to save (file meta included).

    Raises
    ------
    VerificationError
        The decisions do not cover exactly the document's measurements, or
        the sign-off is for another document or study.
    """
    if str(automated.get("SOPInstanceUID", "")) != signoff.automated_sr_uid:
        raise VerificationError("the sign-off is for another SR document")
    if str(automated.get("StudyInstanceUID", "")) != signoff.study_uid:
        raise VerificationError("the sign-off is for another study")
    if not signoff.reviewer.strip():
        raise VerificationError("a reviewer name is required")
    if not signoff.organisation.strip():
        raise VerificationError("an organisation is required")
    document = copy.deepcopy(automated)
    document.decode()  # every text as str, so the character set may change below
    reviewable = reviewable_report(document)
    _check_decisions(reviewable, signoff)
    texts = _evaluation_texts(reviewable, signoff)
    _drop_rejected(reviewable, signoff)
    _drop_empty_measurements_container(document)
    _add_evaluations(document, texts)

    now = now or dt.datetime.now().astimezone()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    new_texts = [signoff.reviewer, signoff.organisation, *(t.TextValue for t in texts)]
    if _texts_need_utf8(document, new_texts):
        document.SpecificCharacterSet = "ISO_IR 192"

    document.SOPInstanceUID = sop_instance_uid or generate_uid()
    document.SeriesInstanceUID = series_instance_uid or generate_uid()
    document.SeriesNumber = VERIFIED_SERIES_NUMBER
    document.SeriesDescription = SERIES_DESCRIPTION
    document.InstanceNumber = instance_number
    document.InstanceCreationDate, document.InstanceCreationTime = date, time
    document.ContentDate, document.ContentTime = date, time
    if "SeriesDate" in document:
        document.SeriesDate, document.SeriesTime = date, time
    if str(automated.get("CompletionFlag", "")) != "COMPLETE":
        document.CompletionFlagDescription = PARTIAL_NOTE
    document.CompletionFlag = "COMPLETE"
    document.PreliminaryFlag = "FINAL"
    document.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = signoff.reviewer
    observer.VerifyingObserverIdentificationCodeSequence = DicomSequence([])
    observer.VerifyingOrganization = signoff.organisation
    observer.VerificationDateTime = now.strftime("%Y%m%d%H%M%S%z")
    document.VerifyingObserverSequence = DicomSequence([observer])
    document.PredecessorDocumentsSequence = _predecessors(signoff.study_uid, [automated, *supersedes])

    meta = FileMetaDataset()
    old_meta = getattr(automated, "file_meta", None)
    meta.TransferSyntaxUID = getattr(old_meta, "TransferSyntaxUID", None) or "1.2.840.10008.1.2.1"  # type: ignore[assignment]  # pydicom takes a str for a UI value
    meta.MediaStorageSOPClassUID = document.SOPClassUID
    meta.MediaStorageSOPInstanceUID = document.SOPInstanceUID
    document.file_meta = meta
    return document
