"""The verified SR: the document under review as the reviewer signed it off.

:func:`build_verified_report` copies the *base* document (the latest verified
SR of the automated SR, or the automated SR itself when nobody signed it off
yet: a later verification starts from the latest verified state) and applies
one decision per finding (measurement group):

- accept: the group stays as it is;
- reject: the group is removed whole (and the Imaging Measurements container
  when nothing is left in it); a TEXT item under Qualitative Evaluations (TID
  1500 row 12) names it, its values, who rejected it and why;
- correct: the group's Image Region SCOORD gets the region the reviewer drew
  and each NUM item the value recomputed from it (:mod:`qa_review.corrections`);
  the group gets a person observer context (TID 1002 / TID 1003: Observer
  Type Person, Person Observer Name, organisation) by HAS OBS CONTEXT, and a
  TEXT item (local code CORRECTED) naming who corrected it and the automated
  values it replaced; the same line goes under Qualitative Evaluations. Each
  corrected value is judged again against the reference tables (its Normality,
  Normal Range and z-score replaced; none, with the reason, without a
  reference: :func:`qa_review.reread.reflag_group`).

After a rejection or correction of an image finding the study-level groups
(TID 1501: ratio, ΔCSA, right minus left, sites enlarged) are recomputed from
the accepted and corrected values (:func:`qa_review.reread.recompute_study_findings`),
a study finding the reviewer rejected staying out; a Comment says what changed.

The document then gets Verification Flag VERIFIED with the Verifying Observer
Sequence (name, organisation, date/time), Completion Flag COMPLETE,
Preliminary Flag FINAL, a new SOP Instance UID in a new series, new content
date/time, and Predecessor Documents pointing to the automated SR and every
earlier verified SR of it (which this one supersedes).

DICOM permits VERIFIED only with COMPLETE (PS3.3 C.17.2). When the automated
SR was PARTIAL (images not measured), its TEXT items naming those images stay
under Qualitative Evaluations, and the Completion Flag Description says so.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import MutableSequence, Sequence

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pydicom.valuerep import DSfloat

from pipeline.sr import codes as sr_codes
from pipeline.sr.codes import concept_key
from pipeline.sr.walk import item_key
from qa_review import codes
from qa_review.findings import findings_of
from qa_review.items import GroupSlot, ReviewableReport, is_confidence, reviewable_report
from qa_review.model import Finding, FindingDecision, SignOff
from qa_review.reread import ReferenceContext, recompute_study_findings, reflag_group

__all__ = [
    "PARTIAL_NOTE",
    "SERIES_DESCRIPTION",
    "VERIFIED_SERIES_NUMBER",
    "VerificationError",
    "build_verified_report",
    "corrected_note",
    "rejected_note",
]

VERIFIED_SERIES_NUMBER = 902
SERIES_DESCRIPTION = "mskus measurements (verified)"
#: Completion Flag Description of a verified SR whose automated SR was PARTIAL (LO: at most 64).
PARTIAL_NOTE = "verified as is; unmeasured images: see Qualitative Evaluations"
_IMAGING_MEASUREMENTS = concept_key(sr_codes.IMAGING_MEASUREMENTS)
_QUALITATIVE = concept_key(sr_codes.QUALITATIVE_EVALUATIONS)
_IMAGE_REGION = concept_key(sr_codes.IMAGE_REGION)
_PERSON_CONTEXT = {
    concept_key(c) for c in (codes.OBSERVER_TYPE, codes.PERSON_OBSERVER_NAME, codes.PERSON_OBSERVER_ORGANIZATION)
}


class VerificationError(ValueError):
    """The sign-off does not fit the document (the message says why)."""


_key = item_key


def _remove(parent: MutableSequence[Dataset], item: Dataset) -> None:
    """Remove ``item`` itself (by identity: equal-looking items may exist) from ``parent``."""
    index = next(i for i, candidate in enumerate(parent) if candidate is item)
    del parent[index]


def rejected_note(reviewer: str, what: str, decision: FindingDecision) -> str:
    """The Qualitative Evaluations line of a rejected finding."""
    return f"rejected by {reviewer}: {what}; reason: {decision.why}"


def corrected_note(reviewer: str, label: str, decision: FindingDecision) -> str:
    """The line (group and Qualitative Evaluations) of a corrected finding: who, how, old and new values."""
    correction = decision.correction
    assert correction is not None
    text = f"{codes.CORRECTED_BY_PREFIX}{reviewer}: {label}: {correction.how}; {correction.describe()}"
    if decision.comment:
        text += f"; comment: {decision.comment}"
    return text


def _check_decisions(reviewable: ReviewableReport, signoff: SignOff) -> None:
    ids = [d.finding_id for d in signoff.decisions]
    known = {f.id for f in findings_of(reviewable)}
    if len(set(ids)) != len(ids):
        raise VerificationError("a finding has more than one decision")
    unknown = sorted(set(ids) - known)
    if unknown:
        raise VerificationError(f"finding {unknown[0]} is not in the document under review")
    missing = sorted(known - set(ids))
    if missing:
        raise VerificationError(f"no decision for finding {missing[0]}")


def _group_index(finding_id: str) -> int:
    return int(finding_id[1:]) - 1


def _set_number(item: Dataset, value: float) -> None:
    measured = item.MeasuredValueSequence[0]
    measured.NumericValue = DSfloat(float(value), auto_format=True)
    if "FloatingPointValue" in measured:
        measured.FloatingPointValue = float(value)


def _set_region(slot: GroupSlot, points: Sequence[tuple[float, float]], closed: bool) -> None:
    region = next(
        (i for i in slot.group.get("ContentSequence") or [] if i.get("ValueType") in ("SCOORD", "SCOORD3D")
         and _key(i) == _IMAGE_REGION),
        None,
    )
    if region is None or region.get("ValueType") != "SCOORD":
        raise VerificationError("the corrected finding has no 2D image region to replace")
    pts = [*points, points[0]] if closed and points[0] != points[-1] else list(points)
    region.GraphicType = "POLYLINE"
    region.GraphicData = [float(v) for p in pts for v in p]


def _observer_context(reviewer: str, organisation: str) -> list[Dataset]:
    has_obs = hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT
    items: list[Dataset] = [
        hd.sr.CodeContentItem(name=codes.OBSERVER_TYPE, value=codes.PERSON, relationship_type=has_obs),
        hd.sr.PnameContentItem(name=codes.PERSON_OBSERVER_NAME, value=reviewer, relationship_type=has_obs),
    ]
    if organisation:
        items.append(
            hd.sr.TextContentItem(name=codes.PERSON_OBSERVER_ORGANIZATION, value=organisation, relationship_type=has_obs)
        )
    return items


def _apply_correction(
    reviewable: ReviewableReport,
    decision: FindingDecision,
    signoff: SignOff,
    finding: Finding,
    reference: ReferenceContext,
) -> None:
    label, kind = finding.label, finding.kind
    correction = decision.correction
    if correction is None:
        raise VerificationError(f"finding {decision.finding_id}: a correction needs the corrected region")
    index = _group_index(decision.finding_id)
    slot = reviewable.slots[index]
    measurements = reviewable.report.groups[index].measurements
    new = {name: value for name, value, _ in correction.values}
    # The group's confidence and the values the new region cannot give go (qa_review.corrections).
    drop = [is_confidence(m) or m.label in correction.dropped for m in measurements]
    names = [m.label for m, gone in zip(measurements, drop, strict=True) if not gone]
    if set(names) - set(new):
        raise VerificationError(f"finding {decision.finding_id}: the correction lacks {sorted(set(names) - set(new))[0]}")
    for m, gone, (parent, item) in zip(measurements, drop, slot.measurements, strict=True):
        if gone:
            _remove(parent, item)
        else:
            _set_number(item, new[m.label])
    _set_region(slot, correction.points, closed=kind != "caliper")
    # The corrected values judged again: their old Normality / Normal Range / z-score would not fit them.
    reflag_group(
        slot.group, reviewable.report.groups[index], slot.measurements, new, reference, finding.sop_instance_uid
    )
    content = slot.group.ContentSequence
    for item in [i for i in content if _key(i) in _PERSON_CONTEXT]:  # an earlier corrector's context
        _remove(content, item)
    # Observer context first among the group's own items, after the tracking identifiers (TID 1410 rows 2-3).
    at = next((i for i, item in enumerate(content) if item.get("RelationshipType") != "HAS OBS CONTEXT"), len(content))
    for offset, item in enumerate(_observer_context(signoff.reviewer, signoff.organisation)):
        content.insert(at + offset, item)
    content.append(
        hd.sr.TextContentItem(
            name=codes.CORRECTED_MEASUREMENT,
            value=corrected_note(signoff.reviewer, label, decision),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )


def _is_study_level(reviewable: ReviewableReport, finding_id: str) -> bool:
    group = reviewable.report.groups[_group_index(finding_id)]
    return bool(group.measurements) and not group.images and not group.regions


def _drop_rejected(reviewable: ReviewableReport, signoff: SignOff) -> None:
    for decision in signoff.rejected:
        slot = reviewable.slots[_group_index(decision.finding_id)]
        _remove(slot.parent, slot.group)


def _drop_empty_measurements_container(document: Dataset) -> None:
    root = document.ContentSequence
    for item in list(root):
        if _key(item) == _IMAGING_MEASUREMENTS and not item.get("ContentSequence"):
            _remove(root, item)


def _text(name, value: str) -> Dataset:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _evaluation_texts(reviewable: ReviewableReport, signoff: SignOff) -> list[Dataset]:
    findings = {f.id: f for f in findings_of(reviewable)}
    texts = []
    for decision in signoff.decisions:
        finding = findings[decision.finding_id]
        if decision.decision.value == "reject":
            texts.append(_text(codes.REJECTED_MEASUREMENT, rejected_note(signoff.reviewer, finding.describe(), decision)))
        elif decision.decision.value == "correct":
            texts.append(_text(codes.CORRECTED_MEASUREMENT, corrected_note(signoff.reviewer, finding.label, decision)))
        elif decision.comment:
            texts.append(_text(codes.COMMENT, f"accepted by {signoff.reviewer}: {finding.label}; comment: {decision.comment}"))
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
    seen: set[str] = set()
    for doc in documents:
        if str(doc.SOPInstanceUID) in seen:
            continue
        seen.add(str(doc.SOPInstanceUID))
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
    base: Dataset | None = None,
    supersedes: Sequence[Dataset] = (),
    now: dt.datetime | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    reference: ReferenceContext | None = None,
) -> Dataset:
    """The verified SR for ``signoff``.

    Parameters
    ----------
    automated : Dataset
        The automated (UNVERIFIED) SR document; not changed.
    signoff : SignOff
        Reviewer, organisation, comment and one decision per finding (ids of
        :func:`qa_review.findings.findings_of` on ``base``).
    base : Dataset, optional
        The document the reviewer saw: the latest verified SR of
        ``automated`` (default: ``automated`` itself); not changed.
    supersedes : sequence of Dataset
        Earlier verified documents of the same automated SR; listed as
        predecessors with it.
    now : datetime, optional
        Verification date/time (default: now, local time with its offset).
    sop_instance_uid, series_instance_uid : str, optional
        Generated when not given.
    instance_number : int
        Instance Number in the verified series.
    reference : ReferenceContext, optional
        The reference tables (and preset, source headers) the corrected values are
        judged against and the study findings recomputed with after a rejection or
        correction (:mod:`qa_review.reread`). Without it (or without tables) a
        corrected value carries no normality, saying why, and study findings whose
        inputs changed are removed, saying so: nothing stale is kept.

    Returns
    -------
    Dataset
        A Comprehensive (3D) SR ready to save (file meta included).

    Raises
    ------
    VerificationError
        The decisions do not cover exactly the findings of ``base``, the
        sign-off is for another document, version or study, or a
        correction does not fit its finding.
    """
    base = automated if base is None else base
    reference = reference if reference is not None else ReferenceContext(None)
    if str(automated.get("SOPInstanceUID", "")) != signoff.automated_sr_uid:
        raise VerificationError("the sign-off is for another SR document")
    if signoff.base_uid and str(base.get("SOPInstanceUID", "")) != signoff.base_uid:
        raise VerificationError("the sign-off was made on another version of the report")
    if str(automated.get("StudyInstanceUID", "")) != signoff.study_uid:
        raise VerificationError("the sign-off is for another study")
    if not signoff.reviewer.strip():
        raise VerificationError("a reviewer name is required")
    if not signoff.organisation.strip():
        raise VerificationError("an organisation is required")
    document = copy.deepcopy(base)
    document.decode()  # every text as str, so the character set may change below
    reviewable = reviewable_report(document)
    _check_decisions(reviewable, signoff)
    texts = _evaluation_texts(reviewable, signoff)
    findings = {f.id: f for f in findings_of(reviewable)}
    for decision in signoff.corrected:
        finding = findings[decision.finding_id]
        if not finding.correctable:
            raise VerificationError(f"finding {finding.id} has no region that can be corrected")
        _apply_correction(reviewable, decision, signoff, finding, reference)
    _drop_rejected(reviewable, signoff)
    study_level = {f.id for f in findings.values() if f.kind == "values" and _is_study_level(reviewable, f.id)}
    changed = [d for d in (*signoff.rejected, *signoff.corrected) if d.finding_id not in study_level]
    if changed:
        rejected_uids = [findings[d.finding_id].tracking_uid for d in signoff.rejected if d.finding_id in study_level]
        note = recompute_study_findings(
            document, reviewable_report(document), signoff.study_uid, reference.tables,
            rejected_tracking_uids=rejected_uids,
        )
        if note:
            texts.append(_text(codes.COMMENT, f"{note} (by {signoff.reviewer})"))
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
