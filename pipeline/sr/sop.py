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

The builder only needs the image *headers* (:mod:`pipeline.sr.sources`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import cast

import highdicom as hd
from pydicom.dataset import Dataset

from pipeline import __version__
from pipeline.analysis import ImageResult
from pipeline.filenames import uid_file_name
from pipeline.reference.findings import StudyFinding
from pipeline.sr import codes
from pipeline.sr.algorithm_items import AlgorithmInfo
from pipeline.sr.content import image_groups
from pipeline.sr.findings import finding_groups, reference_note
from pipeline.sr.image_library import image_library
from pipeline.sr.items import MeasurementGroupTemplate, Readings
from pipeline.sr.source_image import SourceImage
from pipeline.sr.sources import (
    ReportError,
    charset_for,
    check_previous,
    collect_texts,
    highdicom_evidence,
    index_sources,
    restore_evidence_classes,
    result_label,
    study_completeness,
)

__all__ = [
    "LONG_STRING_MAX",
    "MeasurementReportDocument",
    "build_measurement_report",
    "fit_long_string",
    "report_file_name",
]

logger = logging.getLogger(__name__)

MeasurementReportDocument = hd.sr.Comprehensive3DSR | hd.sr.ComprehensiveSR


DEFAULT_SERIES_NUMBER = 900
SERIES_DESCRIPTION = "mskus measurements (automated, unverified)"
MANUFACTURER = "mskus"


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
    study_uid, by_uid = index_sources(results, list(source_datasets))
    if isinstance(previous, Dataset):
        previous = [previous]
    previous_docs = check_previous(list(previous or []), study_uid)
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
        source = SourceImage.from_dataset(ds, label=result_label(result))
        try:
            groups.extend(image_groups(result, source, nerve_algo=nerve_info, muscle_algo=muscle_info, readings=readings))
        except (ValueError, TypeError, KeyError) as exc:
            raise ReportError(f"{result_label(result)}: cannot encode its measurements: {exc}") from None

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
    charset = charset_for(first, collect_texts(root))
    try:
        document = sr_class(
            evidence=highdicom_evidence(evidence),
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
    restore_evidence_classes(document, evidence)
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
