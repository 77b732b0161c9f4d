"""The TID 1500 Imaging Measurement Report document (CONTRACT.md section 5).

:func:`build_measurement_report` turns the analysis results of one study
into one Comprehensive 3D SR (or Comprehensive SR) document:

- root TID 1500 (DCM 126000), Procedure Reported SCT 16310003, a device
  observer (``mskus`` with its version and a stable Device Observer UID),
  an Image Library listing every source image;
- one TID 1410 group per measured structure per frame, and a TID 1501 group
  with the reason for every frame or image where nothing was measured
  (:mod:`pipeline.sr.content`);
- patient and study attributes copied from the source images, a new
  series, Completion Flag COMPLETE (PARTIAL, with a TEXT item naming the
  images, when some of them were not fully measured), Verification Flag
  UNVERIFIED, and the Predecessor Documents Sequence when ``previous``
  documents are superseded.

The builder only needs the image *headers*: :func:`header_dataset` drops the
pixel data, so the storage node and the batch runner can keep headers and
build the document after the pixels are gone.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import highdicom as hd
import pydicom
from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from pipeline import __version__
from pipeline.analysis import ImageResult
from pipeline.filenames import uid_file_name
from pipeline.reference.findings import StudyFinding
from pipeline.sr import codes
from pipeline.sr.content import (
    AlgorithmInfo,
    MeasurementGroupTemplate,
    Readings,
    SourceImage,
    image_groups,
    image_library,
)
from pipeline.sr.findings import finding_groups, reference_note

__all__ = [
    "LONG_STRING_MAX",
    "SR_SOP_CLASSES",
    "MeasurementReportDocument",
    "ReportError",
    "StudyCompleteness",
    "build_measurement_report",
    "fit_long_string",
    "group_by_study",
    "header_dataset",
    "report_file_name",
    "study_completeness",
]

logger = logging.getLogger(__name__)

MeasurementReportDocument = hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR

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

DEFAULT_SERIES_NUMBER = 900
SERIES_DESCRIPTION = "mskus measurements (automated, unverified)"
MANUFACTURER = "mskus"

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


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


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


def _label(result: ImageResult) -> str:
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
        who = f"{_label(result)} ({result.sop_instance_uid})" if result.sop_instance_uid else _label(result)
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


def _check_previous(previous: Sequence[Dataset], study_uid: str) -> list[Dataset]:
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


def _index_sources(
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
        missing = next(_label(r) for r in results if not r.study_instance_uid)
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
                f"no source dataset for image {_label(result)} ({result.sop_instance_uid}): "
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


def _highdicom_evidence(evidence: Sequence[Dataset]) -> list[Dataset]:
    """Evidence highdicom can process: retired classes swapped for their current equivalent.

    highdicom copies patient/study attributes by looking the SOP class up in
    its IOD tables; the true classes are restored afterwards
    (:func:`_restore_evidence_classes`).
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


def _restore_evidence_classes(document: Dataset, evidence: Sequence[Dataset]) -> None:
    true_class = {str(ds.SOPInstanceUID): str(ds.SOPClassUID) for ds in evidence}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in document.get(keyword) or []:
            for series in study.get("ReferencedSeriesSequence") or []:
                for ref in series.get("ReferencedSOPSequence") or []:
                    uid = str(ref.ReferencedSOPInstanceUID)
                    if uid in true_class:
                        ref.ReferencedSOPClassUID = true_class[uid]


def _charset_for(evidence: Dataset, texts: Iterable[str]) -> str | list[str] | None:
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


def _collect_texts(node: object) -> Iterable[str]:
    if isinstance(node, Dataset):
        for element in node:
            if element.VR == "SQ":
                for item in element.value:
                    yield from _collect_texts(item)
            elif element.VR in ("UT", "LO", "SH", "LT", "ST", "PN") and element.value:
                yield str(element.value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _collect_texts(item)


# --------------------------------------------------------------------------------------
# Builder
# --------------------------------------------------------------------------------------


def build_measurement_report(
    image_results: Sequence[ImageResult],
    source_datasets: Sequence[Dataset],
    *,
    previous: Sequence[Dataset] | Dataset | None = None,
    nerve_algo: AlgorithmInfo | None = None,
    muscle_algo: AlgorithmInfo | None = None,
    series_instance_uid: str | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    sop_instance_uid: str | None = None,
    instance_number: int = 1,
    institution_name: str | None = None,
    comprehensive_3d: bool = True,
    readings: Readings | None = None,
    findings: Sequence[StudyFinding] = (),
    reference_files: Sequence[str] = (),
) -> MeasurementReportDocument:
    """Build the TID 1500 measurement report of one study.

    Parameters
    ----------
    image_results : sequence of ImageResult
        Results of :func:`pipeline.analysis.analyze_image` for images of one
        study (refused images included: they make the report PARTIAL).
    source_datasets : sequence of pydicom.dataset.Dataset
        The header of every image in ``image_results`` (exactly those;
        ``UltrasoundImage.dataset`` or :func:`header_dataset`). Patient and
        study attributes come from the first one.
    previous : Dataset or sequence of Dataset, optional
        Earlier SR document(s) of the same study that this one supersedes;
        listed in the Predecessor Documents Sequence.
    nerve_algo, muscle_algo : AlgorithmInfo, optional
        Override the Algorithm Identification; by default each group names
        the algorithm its frame result carries (``FrameResult.algorithm``).
    series_instance_uid, sop_instance_uid : str, optional
        New UIDs are generated when not given.
    series_number, instance_number : int
        Series and instance numbers of the document.
    institution_name : str, optional
        Institution Name of the document (General Equipment).
    comprehensive_3d : bool
        Comprehensive 3D SR (default) or Comprehensive SR.
    readings : mapping of ReadingKey to ReferenceReading, optional
        Flags of the values (:func:`pipeline.reference.readings_for_rows`): each flagged value
        carries its Normality and Normal Range (TID 310 / 312), a z-score its population mean and SD.
    findings : sequence of StudyFinding
        The study's derived values (:func:`pipeline.reference.study_findings`): one TID 1501 group each.
    reference_files : sequence of str
        The reference tables used, named in the document-level "decision support, not diagnosis" note
        (written whenever ``readings`` or ``findings`` are given).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR or highdicom.sr.ComprehensiveSR

    Raises
    ------
    ReportError
        Empty or mixed-study results, results without a matching source
        dataset (or the reverse), malformed datasets, previous documents
        that are not SRs of the same study.
    """
    results = list(image_results)
    study_uid, by_uid = _index_sources(results, list(source_datasets))
    if isinstance(previous, Dataset):
        previous = [previous]
    previous_docs = _check_previous(list(previous or []), study_uid)
    if series_number < 0 or instance_number < 0:
        raise ReportError("series_number and instance_number must not be negative")
    if series_instance_uid and series_instance_uid in {str(ds.get("SeriesInstanceUID", "")) for ds in by_uid.values()}:
        raise ReportError("the report needs a new series: series_instance_uid is the series of a source image")
    if sop_instance_uid and sop_instance_uid in by_uid:
        raise ReportError("sop_instance_uid is the SOP Instance UID of a source image")

    nerve_info, muscle_info = nerve_algo, muscle_algo

    groups: list[MeasurementGroupTemplate] = []
    evidence: list[Dataset] = []
    for result in results:
        ds = by_uid[result.sop_instance_uid]
        evidence.append(ds)
        source = SourceImage.from_dataset(ds, label=_label(result))
        try:
            groups.extend(image_groups(result, source, nerve_algo=nerve_info, muscle_algo=muscle_info, readings=readings))
        except (ValueError, TypeError, KeyError) as exc:
            raise ReportError(f"{_label(result)}: cannot encode its measurements: {exc}") from None

    try:
        groups.extend(finding_groups(study_uid, findings))
    except (ValueError, TypeError, KeyError) as exc:
        raise ReportError(f"cannot encode the study findings: {exc}") from None
    completeness = study_completeness(results)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DEVICE,  # type: ignore[arg-type]  # highdicom takes a pydicom Code (as its own codes are)
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=codes.DEVICE_OBSERVER_UID,
            name="mskus",
            manufacturer_name=MANUFACTURER,
            model_name=f"mskus {__version__}",
        ),
    )
    try:
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.DIAGNOSTIC_ULTRASONOGRAPHY,
            imaging_measurements=groups,
            title=codes.IMAGING_MEASUREMENT_REPORT,
        )
        # TID 1500 row 5, just before Imaging Measurements (row 6).
        root_items = report[0].ContentSequence
        library = image_library(evidence)
        root_items.insert(len(root_items) - 1, library)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ReportError(f"cannot build the measurement report: {exc}") from None
    notes = [reference_note(reference_files)] if (readings or findings) else []
    if completeness.failures or notes:
        report[0].ContentSequence.append(_failures_container(completeness.failures, notes))

    sr_class = hd.sr.Comprehensive3DSR if comprehensive_3d else hd.sr.ComprehensiveSR
    first = evidence[0]
    root = cast(hd.sr.ContainerContentItem, report[0])  # TID 1500's root container
    charset = _charset_for(first, _collect_texts(root))
    try:
        document = sr_class(
            evidence=_highdicom_evidence(evidence),
            content=_evidence_skeleton(root, library),
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=series_number,
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            is_complete=completeness.complete,
            is_final=False,
            is_verified=False,
            institution_name=institution_name,
            previous_versions=previous_docs or None,
            series_description=series_description(previous_docs),
            manufacturer_model_name="mskus",
            software_versions=__version__,
            coding_schemes=[codes.local_coding_scheme()],
            specific_character_set=charset,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ReportError(f"cannot build the SR document: {exc}") from None
    _attach_content(document, root)
    _restore_evidence_classes(document, evidence)
    if not completeness.complete:
        n = len(completeness.failures)
        document.CompletionFlagDescription = fit_long_string(
            f"{n} image(s) not fully measured; see Qualitative Evaluations"
        )
    return document


#: Most characters a Long String (LO) value may hold.
LONG_STRING_MAX = 64


def fit_long_string(text: str, limit: int = LONG_STRING_MAX) -> str:
    """``text`` as an LO value: whole, or cut after the last whole word that fits, with "...".

    A description cut mid-word reads as a bug; one cut at a word with an
    ellipsis reads as shortened.
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[: limit - 3]
    if " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ;,:.") + "..."


def _evidence_skeleton(root: hd.sr.ContainerContentItem, library: hd.sr.ContainerContentItem) -> Dataset:
    """The root container holding only its Image Library: all the SOP constructor needs to see.

    highdicom's document constructor deep-copies the content tree, parses the
    copy back into content items and searches it for image references: two
    thirds of the time of a 40-frame report. The Image Library references
    every source image, and every group references only source images (by
    construction), so the evidence sequences derived from this skeleton are
    the same; :func:`_attach_content` then puts the whole tree in place.
    """
    skeleton = Dataset()
    for element in root:
        if element.keyword != "ContentSequence":
            skeleton.add(element)
    skeleton.ContentSequence = [library]
    return skeleton


def _attach_content(document: MeasurementReportDocument, root: hd.sr.ContainerContentItem) -> None:
    """Give ``document`` the full content tree of ``root`` (built for it alone, so not copied)."""
    document.ContentSequence = root.ContentSequence
    # What ``document.content`` returns; the constructor only saw the skeleton.
    document._content = hd.sr.ContentSequence([root], is_root=True)


def _failures_container(
    failures: Sequence[str], notes: Sequence[hd.sr.TextContentItem] = ()
) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12 container with one TEXT (row 14) per incompletely measured image, then ``notes``
    (the reference note: decision support, not diagnosis)."""
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            *(
                hd.sr.TextContentItem(
                    name=codes.FAILED_IMAGE, value=line, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
                )
                for line in failures
            ),
            *notes,
        ]
    )
    return container


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


_VERSION = re.compile(r"\bv(\d+)\b")


def series_description(previous: Sequence[Dataset] = ()) -> str:
    """Series Description of a report: the first says what it is; a superseding one says so where a PACS
    user sees it, with its version (one more than the highest of the documents it supersedes)."""
    if not previous:
        return SERIES_DESCRIPTION
    versions = [int(m.group(1)) for ds in previous if (m := _VERSION.search(str(ds.get("SeriesDescription", ""))))]
    version = max(versions, default=1) + 1
    return f"mskus measurements v{version}, supersedes v{version - 1} (automated)"


def report_file_name(study_instance_uid: str) -> str:
    """File name of a study's report in an output folder (the UID through :func:`uid_file_name`)."""
    return f"SR_{uid_file_name(study_instance_uid)}.dcm"
