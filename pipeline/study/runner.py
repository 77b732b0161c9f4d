"""Analyse one study: the loop that ``mskus analyze``, the node's workers and ``mskus batch`` share.

:func:`analyze_study` reads each image of a study once (its SHA-256 and its
dataset from one read), analyses it frame by frame, calls the per-frame
hooks while the frame's pixels are at hand (QA overlays, key images), then
lets the pixels go and keeps only the results and the image headers. Any
failure of one image, expected (a refusal with its reason) or not (an
internal error), is a refusal of that image only: the study goes on and
its report is PARTIAL with the good images' measurements.

What to do with the result (print it, write the study's SR and record,
archive it in the node) is the caller's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pipeline.analysis import FrameResult, ImageResult, MeasurementRow, measurement_rows
from pipeline.batch.reading import hash_and_read
from pipeline.batch.records import InputRecord
from pipeline.batch.tables import ErrorRow, ImageContext
from pipeline.cine.rows import EventRow, event_rows
from pipeline.errors import INTERNAL_ERROR, MskusInputError, internal_error
from pipeline.loading import UltrasoundFrame, UltrasoundImage, check_elements, validate_dataset
from pipeline.reference import (
    ReadingKey,
    ReferenceReading,
    ReferenceTables,
    StudyFinding,
    covariates_from_header,
    device_from_header,
    readings_for_rows,
    study_findings,
)
from pipeline.settings import Analyzer
from pipeline.sr.sources import header_dataset

__all__ = ["AnalysedImage", "FrameHook", "HeaderEditor", "StudyAnalysis", "StudyFile", "analyze_study"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyFile:
    """One input file of a study.

    Attributes
    ----------
    path : str
        Where to read it.
    name : str
        How every output names it (``source_file``): the path relative to
        the input folder, the name the user gave, or the node's inbox name.
    sop_instance_uid : str
        From a header scan ('' when not known yet), for the error row of a
        file that cannot be read at all.
    frames : int
        Number of frames, from the header scan (0 when not known).
    """

    path: str
    name: str
    sop_instance_uid: str = ""
    frames: int = 0


class FrameHook(Protocol):
    """Called with each analysed frame while its pixels are in memory (overlays, key images)."""

    def __call__(self, image: UltrasoundImage, frame: UltrasoundFrame, result: FrameResult) -> None: ...


class HeaderEditor(Protocol):
    """Changes an image header before it goes into the report (pseudonymisation)."""

    def apply(self, header: Dataset) -> Dataset: ...


@dataclass(frozen=True)
class AnalysedImage:
    """One input file after analysis.

    Attributes
    ----------
    file : StudyFile
        The input.
    result : ImageResult
        Its frames, or why it was refused (``error`` set). Per-frame ROI
        masks are dropped once the hooks have run.
    header : Dataset or None
        Its header without pixel data, for the report's Image Library and
        evidence; ``None`` when not even a header could be read (the image
        is then only in the error rows: a report cannot name it).
    context : ImageContext
        Header values repeated on each of its table rows.
    readings : mapping of ReadingKey to ReferenceReading
        Flag, reference interval and z-score of each of its values
        (:func:`pipeline.reference.readings_for_rows`, with the patient's
        covariates and the device from its header).
    """

    file: StudyFile
    result: ImageResult
    header: Dataset | None = field(default=None, repr=False)
    context: ImageContext = field(default_factory=ImageContext)
    readings: Mapping[ReadingKey, ReferenceReading] = field(default_factory=lambda: MappingProxyType({}), repr=False)


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything one study's analysis gave.

    Attributes
    ----------
    study_uid : str
        Study Instance UID.
    images : tuple of AnalysedImage
        One per input file, in input order.
    inputs : tuple of InputRecord
        Size, time and SHA-256 of every file that could be opened.
    errors : tuple of ErrorRow
        Why files or frames were not (fully) analysed, sorted.
    frames : int
        Frames analysed.
    findings : tuple of StudyFinding
        Per-study derived values and flags (wrist-to-forearm ratio, ΔCSA,
        side differences, sites enlarged; :func:`pipeline.reference.study_findings`).
    """

    study_uid: str
    images: tuple[AnalysedImage, ...]
    inputs: tuple[InputRecord, ...]
    errors: tuple[ErrorRow, ...]
    frames: int
    findings: tuple[StudyFinding, ...] = ()

    @property
    def readings(self) -> Mapping[ReadingKey, ReferenceReading]:
        """The readings of every image of the study."""
        merged: dict[ReadingKey, ReferenceReading] = {}
        for image in self.images:
            merged.update(image.readings)
        return MappingProxyType(merged)

    @property
    def reportable(self) -> tuple[AnalysedImage, ...]:
        """The images a report can reference (those with a header)."""
        return tuple(image for image in self.images if image.header is not None)

    @property
    def analysed(self) -> bool:
        """Whether any frame was measured or refused (else there is nothing to report)."""
        return any(image.result.frames for image in self.images)

    @property
    def failed_images(self) -> int:
        """Input files not fully analysed."""
        return sum(1 for image in self.images if image.result.failed)

    def event_rows(self) -> Iterator[EventRow]:
        """One ``events.csv`` row per fasciculation detected in the study's muscle clips."""
        for image in self.images:
            result = image.result
            if result.fasciculation is None or result.protocol is None:
                continue
            laterality = result.frames[0].laterality.value if result.frames else ""
            yield from event_rows(
                result.fasciculation,
                study_uid=result.study_instance_uid,
                sop_instance_uid=result.sop_instance_uid,
                structure=result.protocol.site,
                laterality=laterality,
            )

    def measurement_rows(self) -> Iterator[tuple[MeasurementRow, ImageContext, ReferenceReading | None]]:
        """Every measurement row of the study with its image's context and reading, in input order."""
        for image in self.images:
            for row in measurement_rows(image.result):
                yield row, image.context, image.readings.get(ReadingKey.of(row)) if row.measurement else None


def _slim(frame: FrameResult) -> FrameResult:
    """Drop the per-frame muscle ROI mask (a full-frame array) once the hooks have run."""
    if frame.muscle is None or not frame.muscle.roi_mask.size:
        return frame
    return dataclasses.replace(frame, muscle=dataclasses.replace(frame.muscle, roi_mask=np.zeros((0, 0), dtype=bool)))


def _context(header: Dataset) -> ImageContext:
    return ImageContext(
        patient_id=str(header.get("PatientID", "") or ""),
        study_date=str(header.get("StudyDate", "") or ""),
        series_description=str(header.get("SeriesDescription", "") or ""),
    )


def _clean_header(path: str, parsed: Dataset | None = None) -> Dataset | None:
    """The header of a file that could not be analysed, every undecodable element left out.

    ``parsed`` is the dataset when the file was read already (it is not read
    again); ``None`` is returned when there is no header, or it lacks what a
    report needs to reference the image.
    """
    try:
        raw = parsed if parsed is not None else pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not even a header: only the error row can tell
        return None
    header = Dataset()
    for tag in list(raw.keys()):
        try:
            element = raw[tag]
            if element.VR == "SQ":
                for item in element.value:
                    check_elements(item)
        except Exception:  # noqa: BLE001 - the malformed element is what got the image refused
            continue
        header.add(element)  # header_dataset below drops the pixel data
    if hasattr(raw, "file_meta"):
        header.file_meta = raw.file_meta
    needed = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows", "Columns")
    if not all(str(header.get(k, "") or "") for k in needed):
        return None
    try:
        return header_dataset(header)
    except Exception:  # noqa: BLE001 - a header the report cannot use
        return None


class _Study:
    """Collects one study's images, inputs and error rows as they are analysed."""

    def __init__(self, study_uid: str, analyzer: Analyzer, on_frame: FrameHook | None, header_editor: HeaderEditor | None):
        self.study_uid = study_uid
        self.analyzer = analyzer
        self.on_frame = on_frame
        self.header_editor = header_editor
        self.reference: ReferenceTables = analyzer.settings.reference
        self.images: list[AnalysedImage] = []
        self.inputs: list[InputRecord] = []
        self.errors: list[ErrorRow] = []
        self.frames = 0

    def _error(self, file: StudyFile, code: str, reason: str, sop_uid: str = "") -> None:
        self.errors.append(ErrorRow(file.name, code, reason, sop_uid or file.sop_instance_uid, self.study_uid))
        logger.info("%s: %s", file.name, reason)

    def _edited(self, header: Dataset) -> Dataset:
        return self.header_editor.apply(header) if self.header_editor is not None else header

    def refuse(self, file: StudyFile, code: str, reason: str, parsed: Dataset | None = None) -> None:
        """``file`` could not be analysed: an error row, and a refused image when its header names it."""
        header = _clean_header(file.path, parsed)
        sop_uid = str(header.SOPInstanceUID) if header is not None else file.sop_instance_uid
        self._error(file, code, reason, sop_uid)
        if header is None:
            return
        result = ImageResult(
            source_file=file.name,
            sop_instance_uid=sop_uid,
            sop_class_uid=str(header.SOPClassUID),
            study_instance_uid=str(header.StudyInstanceUID),
            series_instance_uid=str(header.get("SeriesInstanceUID", "") or ""),
            number_of_frames=file.frames or int(header.get("NumberOfFrames", 1) or 1),
            error=reason,
            error_code=code,
        )
        self.images.append(AnalysedImage(file, result, self._edited(header), _context(header)))

    def add(self, file: StudyFile) -> None:
        try:
            read = hash_and_read(file.path)
        except OSError as exc:
            self._error(file, "unreadable", f"cannot read file: {exc.strerror or exc}")
            return
        except Exception as exc:  # noqa: BLE001 - one file's fault never costs the study
            self._error(file, INTERNAL_ERROR, internal_error(file.path, "reading", exc))
            return
        self.inputs.append(InputRecord(file.name, read.stat.st_size, read.stat.st_mtime_ns, read.sha256))
        try:
            if read.error is not None:
                raise read.error
            assert read.dataset is not None  # a ReadInput holds a dataset or an error
            validate_dataset(read.dataset)
            image = UltrasoundImage(read.dataset, source=file.name)
            header = header_dataset(image.dataset)
        except MskusInputError as exc:
            self.refuse(file, exc.code, str(exc), read.dataset)
            return
        except Exception as exc:  # noqa: BLE001 - a reader bug refuses this file only
            self.refuse(file, INTERNAL_ERROR, internal_error(file.path, "loading", exc), read.dataset)
            return
        del read
        on_frame = None
        if self.on_frame is not None:
            hook = self.on_frame
            current = image

            def on_frame(frame: UltrasoundFrame, result: FrameResult) -> None:
                hook(current, frame, result)

        try:
            result = self.analyzer.analyze(image, on_frame=on_frame)
        except Exception as exc:  # noqa: BLE001 - a hook's fault (an overlay folder) refuses this image only
            self.refuse(file, INTERNAL_ERROR, internal_error(file.path, "analysing", exc), header)
            return
        finally:
            del image
        result = dataclasses.replace(result, frames=tuple(_slim(f) for f in result.frames))
        readings = readings_for_rows(
            measurement_rows(result),
            self.reference,
            device=device_from_header(header, preset=self.analyzer.settings.preset),
            covariates=covariates_from_header(header),
        )
        self.images.append(AnalysedImage(file, result, self._edited(header), _context(header), readings))
        self.frames += len(result.frames)
        if result.failed:
            self._error(file, result.error_code or "input_error", result.error, result.sop_instance_uid)
        uncalibrated = next((f for f in result.frames if not f.calibration.is_calibrated), None)
        if uncalibrated is not None:
            note = uncalibrated.calibration.note or "no calibration"
            self._error(file, "uncalibrated", f"{note}: mm values not reported (echogenicity only)", result.sop_instance_uid)

    def result(self) -> StudyAnalysis:
        rows = [row for image in self.images for row in measurement_rows(image.result)]
        return StudyAnalysis(
            study_uid=self.study_uid,
            images=tuple(self.images),
            inputs=tuple(self.inputs),
            errors=tuple(sorted(self.errors, key=lambda e: e.sort_key)),
            frames=self.frames,
            findings=study_findings(rows, self.reference),
        )


def analyze_study(
    files: Sequence[StudyFile],
    analyzer: Analyzer,
    *,
    study_uid: str = "",
    on_frame: FrameHook | None = None,
    header_editor: HeaderEditor | None = None,
) -> StudyAnalysis:
    """Analyse the images of one study.

    Parameters
    ----------
    files : sequence of StudyFile
        The study's input files, in the order their rows should appear.
    analyzer : Analyzer
        The run's rules and segmenters (:func:`pipeline.settings.build_analyzer`).
    study_uid : str
        The study's Instance UID when known from a header scan (named in
        error rows of unreadable files); else taken from the first image.
    on_frame : FrameHook, optional
        Called with every analysed frame while its pixels are in memory.
    header_editor : HeaderEditor, optional
        Applied to every image header before it goes into the result
        (pseudonymisation).

    Returns
    -------
    StudyAnalysis
        Results, headers, input fingerprints and error rows. Never raises
        for a bad input: each one is a refusal with its reason.
    """
    study = _Study(study_uid, analyzer, on_frame, header_editor)
    for file in files:
        study.add(file)
        if not study.study_uid and study.images:
            study.study_uid = study.images[-1].result.study_instance_uid or ""
    return study.result()
