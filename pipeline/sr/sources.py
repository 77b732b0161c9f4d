"""The source images of a report: headers kept as evidence, studies, completeness.

The report builder (:mod:`pipeline.sr.sop`) needs only the image *headers*:
:func:`header_dataset` drops the pixel data, so the storage node and the
study runner keep headers and build the document after the pixels are gone.
Here too: grouping results by study, whether a study was measured completely
(COMPLETE / PARTIAL and which images), the evidence highdicom is given, and
the character set the document's texts need.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pydicom
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from pipeline.analysis import ImageResult

__all__ = ["SR_SOP_CLASSES", "ReportError", "StudyCompleteness", "group_by_study", "header_dataset", "study_completeness"]


#: Structured Report storage SOP classes accepted as predecessors.
SR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
        "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
    }
)


#: Type 2 patient/study attributes highdicom reads from the first source image.
_TYPE2_HEADER = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


class ReportError(ValueError):
    """The arguments cannot make a valid measurement report (the message says why)."""


def header_dataset(dataset: Dataset) -> Dataset:
    """A copy of an image dataset without its pixel data (group 7FE0).

    Everything else is kept: the copy is evidence for the SR (patient, study
    and SOP attributes, Rows/Columns for the Image Library). Missing Type 2
    patient/study attributes are added empty.
    """
    header = Dataset()
    for element in dataset:
        if element.tag.group == 0x7FE0:
            continue
        header.add(pydicom.dataelem.DataElement(element.tag, element.VR, element.value))
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        header.file_meta = meta
    for keyword in _TYPE2_HEADER:
        if keyword not in header:
            setattr(header, keyword, None)
    if getattr(dataset, "filename", None):
        header.filename = dataset.filename
    return header


def group_by_study(results: Iterable[ImageResult]) -> dict[str, list[ImageResult]]:
    """Image results keyed by Study Instance UID, in input order.

    Results without a study (files that could not be read at all) are left
    out: they cannot belong to any study's report.
    """
    grouped: dict[str, list[ImageResult]] = defaultdict(list)
    for result in results:
        if result.study_instance_uid:
            grouped[result.study_instance_uid].append(result)
    return dict(grouped)


@dataclass(frozen=True)
class StudyCompleteness:
    """Which images of a study were not fully measured, and why.

    Attributes
    ----------
    complete : bool
        Every image was analysed and every analysed frame measured.
    failures : tuple of str
        One line per image that was refused or had unmeasured frames.
    """

    complete: bool
    failures: tuple[str, ...]


def _frame_ranges(numbers: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for n in sorted(numbers):
        if start is None:
            start = prev = n
        elif n == cast(int, prev) + 1:  # set with start
            prev = n
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


def result_label(result: ImageResult) -> str:
    """How the report names an image: a relative path as given, else the file name, else the UID.

    ``mskus analyze`` and ``mskus batch`` give paths relative to their input
    folder, which tell apart two ``IM_0001.dcm`` of one study; an absolute
    path (the storage node's inbox) says nothing a reader needs beyond its name.
    """
    if not result.source_file:
        return result.sop_instance_uid
    path = Path(result.source_file)
    return path.as_posix() if not path.is_absolute() else path.name


def study_completeness(results: Sequence[ImageResult]) -> StudyCompleteness:
    """Complete when no image failed and every analysed frame was measured."""
    failures: list[str] = []
    for result in results:
        who = f"{result_label(result)} ({result.sop_instance_uid})" if result.sop_instance_uid else result_label(result)
        if result.failed:
            failures.append(f"{who}: {result.error}")
        by_reason: dict[str, list[int]] = defaultdict(list)
        for frame in result.frames:
            if not frame.measured:
                by_reason[frame.reason or "not measured"].append(frame.frame_number)
        for reason, numbers in by_reason.items():
            if result.number_of_frames > 1:
                failures.append(f"{who} frame(s) {_frame_ranges(numbers)}: {reason}")
            else:
                failures.append(f"{who}: {reason}")
        if not result.failed and not result.frames:
            failures.append(f"{who}: no frame analysed")
    return StudyCompleteness(complete=not failures, failures=tuple(failures))


def check_previous(previous: Sequence[Dataset], study_uid: str) -> list[Dataset]:
    out = []
    for number, doc in enumerate(previous, start=1):
        if not isinstance(doc, Dataset):
            raise ReportError(f"previous document {number} is not a pydicom Dataset")
        sop_class = str(doc.get("SOPClassUID", ""))
        if sop_class not in SR_SOP_CLASSES:
            raise ReportError(f"previous document {number} is not a Structured Report (SOP Class {sop_class or 'missing'})")
        if str(doc.get("StudyInstanceUID", "")) != study_uid:
            raise ReportError(
                f"previous document {number} belongs to study {doc.get('StudyInstanceUID', '?')}, not {study_uid}"
            )
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
            if not doc.get(keyword):
                raise ReportError(f"previous document {number} has no {keyword}")
        out.append(doc)
    return out


def index_sources(
    results: Sequence[ImageResult], source_datasets: Sequence[Dataset]
) -> tuple[str, dict[str, Dataset]]:
    """Check the arguments; return the study UID and the headers by SOP Instance UID."""
    if not results:
        raise ReportError("no image results: a measurement report needs at least one analysed image")
    for result in results:
        if not isinstance(result, ImageResult):
            raise ReportError(f"expected ImageResult objects, got {type(result).__name__}")
    studies = {r.study_instance_uid for r in results}
    if "" in studies:
        missing = next(result_label(r) for r in results if not r.study_instance_uid)
        raise ReportError(
            f"{missing}: result has no Study Instance UID (unreadable input); leave it out "
            "(group_by_study does) and report it elsewhere"
        )
    if len(studies) != 1:
        raise ReportError(
            f"results span {len(studies)} studies; build one report per study (see group_by_study)"
        )
    study_uid = next(iter(studies))
    by_uid: dict[str, Dataset] = {}
    for number, ds in enumerate(source_datasets, start=1):
        if not isinstance(ds, Dataset):
            raise ReportError(f"source dataset {number} is not a pydicom Dataset")
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows", "Columns"):
            if not ds.get(keyword):
                raise ReportError(f"source dataset {number} has no {keyword}")
        if str(ds.StudyInstanceUID) != study_uid:
            raise ReportError(
                f"source dataset {ds.SOPInstanceUID} belongs to study {ds.StudyInstanceUID}, not {study_uid}"
            )
        by_uid[str(ds.SOPInstanceUID)] = ds
    result_uids = set()
    for result in results:
        if result.sop_instance_uid in result_uids:
            raise ReportError(f"image {result.sop_instance_uid} appears in more than one result")
        result_uids.add(result.sop_instance_uid)
        if result.sop_instance_uid not in by_uid:
            raise ReportError(
                f"no source dataset for image {result_label(result)} ({result.sop_instance_uid}): "
                "pass the header of every analysed image (UltrasoundImage.dataset or header_dataset())"
            )
    extra = set(by_uid) - result_uids
    if extra:
        raise ReportError(f"source dataset(s) without an analysis result: {', '.join(sorted(extra))}")
    return study_uid, by_uid


#: Retired ultrasound SOP classes (accepted by the loader) that highdicom's IOD
#: tables do not know, and the current class with the same modules.
_RETIRED_CLASS_EQUIVALENT = {
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.3.1",
}


def highdicom_evidence(evidence: Sequence[Dataset]) -> list[Dataset]:
    """Evidence highdicom can process: retired classes swapped for their current equivalent.

    highdicom copies patient/study attributes by looking the SOP class up in
    its IOD tables; the true classes are restored afterwards
    (:func:`restore_evidence_classes`).
    """
    out = []
    for ds in evidence:
        equivalent = _RETIRED_CLASS_EQUIVALENT.get(str(ds.SOPClassUID))
        if equivalent is None:
            out.append(ds)
            continue
        proxy = Dataset()
        for element in ds:
            proxy.add(element)
        proxy.add_new(0x00080016, "UI", equivalent)  # a new element: the source's stays untouched
        out.append(proxy)
    return out


def restore_evidence_classes(document: Dataset, evidence: Sequence[Dataset]) -> None:
    true_class = {str(ds.SOPInstanceUID): str(ds.SOPClassUID) for ds in evidence}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in document.get(keyword) or []:
            for series in study.get("ReferencedSeriesSequence") or []:
                for ref in series.get("ReferencedSOPSequence") or []:
                    uid = str(ref.ReferencedSOPInstanceUID)
                    if uid in true_class:
                        ref.ReferencedSOPClassUID = true_class[uid]


def charset_for(evidence: Dataset, texts: Iterable[str]) -> str | list[str] | None:
    """The source's Specific Character Set when it can encode every text, else UTF-8 (ISO_IR 192)."""
    declared = evidence.get("SpecificCharacterSet")
    terms = [] if not declared else ([declared] if isinstance(declared, str) else list(declared))
    if not terms:
        codec: str | None = "ascii"
    elif len(terms) == 1:
        codec = python_encoding.get(terms[0])
    else:
        codec = None  # code extensions: do not try to re-encode, use UTF-8
    if codec is not None:
        try:
            for text in texts:
                text.encode(codec)
        except UnicodeEncodeError:
            return "ISO_IR 192"
        return declared
    return "ISO_IR 192"


def collect_texts(node: object) -> Iterable[str]:
    if isinstance(node, Dataset):
        for element in node:
            if element.VR == "SQ":
                for item in element.value:
                    yield from collect_texts(item)
            elif element.VR in ("UT", "LO", "SH", "LT", "ST", "PN") and element.value:
                yield str(element.value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from collect_texts(item)
