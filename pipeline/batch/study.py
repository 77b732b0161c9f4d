"""The per-study work: analyse every image of one study and write its outputs.

:func:`process_study` is what runs in a worker process (local pool) or on a
Dask worker. It reads each image, measures frame by frame, draws the QA
overlay of each frame while its pixels are at hand (then lets them go), and
keeps only the rows and the image headers. At the end it writes the
study's SR and, last, its record. It needs nothing from the coordinator
but the :class:`~pipeline.batch.plan.StudyTask` and returns a small
:class:`StudyOutcome`.

Input problems become error rows; only a broken output folder (or a bug)
makes it raise.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from pipeline import __version__
from pipeline.analysis import FrameResult, ImageResult, analyze_frame, measurement_rows
from pipeline.batch.atomic import atomic_write_bytes
from pipeline.batch.overlays import write_overlay
from pipeline.batch.plan import FileRef, StudyTask
from pipeline.batch.pseudonym import Pseudonymizer
from pipeline.batch.reading import hash_and_read
from pipeline.batch.records import InputRecord, StudyRecord, read_record, record_path, write_record
from pipeline.batch.settings import RunSettings, rules_from_text
from pipeline.batch.summary import summary_rows
from pipeline.batch.tables import MEASUREMENT_COLUMNS, ErrorRow, ImageContext, measurement_cells
from pipeline.errors import MskusInputError
from pipeline.loading import UltrasoundImage, validate_dataset
from pipeline.measurements.muscle import describe_boundaries
from pipeline.protocols import ProtocolRules, laterality_of
from pipeline.segmentation import ModelMismatchError, NerveSegmenter, SegmenterSpec
from pipeline.segmentation.factory import default_boundary_finder
from pipeline.sr.sop import SR_SOP_CLASSES, build_measurement_report, header_dataset, report_file_name

__all__ = ["StudyOutcome", "VersionMismatchError", "derived_uid", "process_study"]

logger = logging.getLogger(__name__)

_UID_NAMESPACE = "mskus-batch-sr-v1"
_STATUS = MEASUREMENT_COLUMNS.index("status")


class VersionMismatchError(RuntimeError):
    """A worker runs another mskus version, or has another nerve model, than the coordinator."""


@dataclass(frozen=True)
class StudyOutcome:
    """What the coordinator hears back about a finished study."""

    study_uid: str
    images: int
    frames: int
    measured_rows: int
    error_rows: int
    sr_file: str
    seconds: float
    worker: str = ""


@dataclass
class _StudyParts:
    """Collected while the images of a study are processed."""

    inputs: list[InputRecord] = field(default_factory=list)
    results: list[ImageResult] = field(default_factory=list)
    headers: list[Dataset] = field(default_factory=list)
    measurements: list[list[str]] = field(default_factory=list)
    errors: list[ErrorRow] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    frames: int = 0


def derived_uid(*parts: str) -> str:
    """A reproducible ``2.25.`` UID from ``parts`` (same inputs and settings, same SR UIDs)."""
    digest = hashlib.sha256("\x1f".join([_UID_NAMESPACE, *parts]).encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


@functools.lru_cache(maxsize=4)
def _rules(text: str) -> ProtocolRules:
    return rules_from_text(text)


@functools.lru_cache(maxsize=2)
def _segmenter(spec: SegmenterSpec) -> NerveSegmenter:
    """The run's segmenter, built once per worker process (loading a model takes ~0.1 s)."""
    return spec.build()


@functools.lru_cache(maxsize=2)
def _boundary_finder(expected: str) -> Any:
    """This worker's muscle boundary finder; it must be the one the run was set up with."""
    finder = default_boundary_finder()
    here = describe_boundaries(finder)
    if here != expected:
        raise ModelMismatchError(f"muscle boundaries here are '{here}', the run was set up with '{expected}'")
    return finder


def _slim(frame: FrameResult) -> FrameResult:
    """Drop the per-frame muscle ROI mask (a full-frame array) once the overlay is drawn."""
    if frame.muscle is None or not frame.muscle.roi_mask.size:
        return frame
    return dataclasses.replace(frame, muscle=dataclasses.replace(frame.muscle, roi_mask=np.zeros((0, 0), dtype=bool)))


def _header_only(path: str) -> Dataset | None:
    """The header of a file that could not be loaded, when it has what the SR needs."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - no header, no SR entry
        return None
    needed = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "Rows", "Columns")
    return header_dataset(ds) if all(ds.get(k) for k in needed) else None


def _context(header: Dataset) -> ImageContext:
    return ImageContext(
        patient_id=str(header.get("PatientID", "") or ""),
        study_date=str(header.get("StudyDate", "") or ""),
        series_description=str(header.get("SeriesDescription", "") or ""),
    )


def _analyse_image(image: UltrasoundImage, task: StudyTask, parts: _StudyParts, rel: str) -> ImageResult:
    """:func:`pipeline.analysis.analyze_image`, drawing each overlay on the way and slimming each frame.

    Same protocol choice, laterality and error handling as ``analyze_image``;
    the loop is written out here (rather than ``on_frame=``) so that each
    frame's full-size muscle ROI mask is dropped as soon as its overlay is
    drawn: a 1,000-frame muscle cine would otherwise hold ~0.5 GB of masks.
    """
    settings = task.settings
    common: dict[str, Any] = dict(
        source_file=rel,
        sop_instance_uid=image.sop_instance_uid,
        sop_class_uid=image.sop_class_uid,
        study_instance_uid=image.study_instance_uid,
        series_instance_uid=image.series_instance_uid,
        number_of_frames=image.number_of_frames,
    )
    try:
        choice = _rules(settings.rules_text).choose(image.dataset, override=settings.protocol)
    except MskusInputError as exc:
        return ImageResult(**common, error=str(exc), error_code=exc.code)
    laterality = laterality_of(image.dataset)
    frames: list[FrameResult] = []
    try:
        for frame in image.iter_frames():
            result = analyze_frame(
                frame,
                choice,
                laterality,
                segmenter=_segmenter(settings.segmenter),
                boundary_finder=_boundary_finder(settings.muscle_boundaries),
            )
            if settings.overlays:
                parts.overlays.append(
                    write_overlay(task.out_dir, task.study_uid, frame, result, tissue_only=settings.pseudonymize)
                )
            frames.append(_slim(result))
    except MskusInputError as exc:
        return ImageResult(**common, protocol=choice, frames=tuple(frames), error=str(exc), error_code=exc.code)
    return ImageResult(**common, protocol=choice, frames=tuple(frames))


def _process_file(ref: FileRef, task: StudyTask, parts: _StudyParts, pseudonymizer: Pseudonymizer | None) -> None:
    header: Dataset | None
    try:
        read = hash_and_read(ref.path)
    except OSError as exc:
        parts.errors.append(ErrorRow(ref.rel, "unreadable", f"cannot read file: {exc.strerror or exc}", ref.sop_instance_uid, task.study_uid))
        return
    st, sha256, dataset = read.stat, read.sha256, read.dataset
    parts.inputs.append(InputRecord(ref.rel, st.st_size, st.st_mtime_ns, sha256))
    try:
        if read.error is not None:
            raise read.error
        assert dataset is not None  # a ReadInput holds a dataset or an error
        validate_dataset(dataset)
        image = UltrasoundImage(dataset, source=ref.rel)
    except (MskusInputError, OSError) as exc:
        if isinstance(exc, MskusInputError):
            code, reason = exc.code, str(exc)
        else:
            code, reason = "unreadable", f"cannot read file: {exc.strerror or exc}"
        parts.errors.append(ErrorRow(ref.rel, code, reason, ref.sop_instance_uid, task.study_uid))
        header = _header_only(ref.path)
        if header is not None:
            parts.headers.append(pseudonymizer.apply(header) if pseudonymizer else header)
            parts.results.append(
                ImageResult(
                    source_file=ref.rel,
                    sop_instance_uid=str(header.SOPInstanceUID),
                    sop_class_uid=str(header.SOPClassUID),
                    study_instance_uid=str(header.StudyInstanceUID),
                    series_instance_uid=str(header.get("SeriesInstanceUID", "")),
                    number_of_frames=ref.frames,
                    error=reason,
                    error_code=code,
                )
            )
        return
    header = header_dataset(image.dataset)
    if pseudonymizer is not None:
        pseudonymizer.apply(header)
    try:
        result = _analyse_image(image, task, parts, ref.rel)
    except Exception as exc:  # noqa: BLE001 - one image's bug must not lose the study
        logger.exception("%s: internal error", ref.rel)
        parts.errors.append(
            ErrorRow(ref.rel, "internal", f"internal error: {type(exc).__name__}: {exc}", ref.sop_instance_uid, task.study_uid)
        )
        return
    finally:
        del image, dataset
    parts.results.append(result)
    parts.headers.append(header)
    parts.frames += len(result.frames)
    context = _context(header)
    parts.measurements.extend(measurement_cells(row, context) for row in measurement_rows(result))
    if result.failed:
        parts.errors.append(ErrorRow(ref.rel, result.error_code or "input_error", result.error, result.sop_instance_uid, task.study_uid))
    uncalibrated = next((f for f in result.frames if not f.calibration.is_calibrated), None)
    if uncalibrated is not None:
        note = uncalibrated.calibration.note or "no calibration"
        parts.errors.append(
            ErrorRow(
                ref.rel,
                "uncalibrated",
                f"{note}: mm values not reported (echogenicity only)",
                result.sop_instance_uid,
                task.study_uid,
            )
        )


def _previous_report(path: Path, study_uid: str, new_uid: str) -> Dataset | None:
    """The SR this run's report replaces (an older analysis of the same study), if any."""
    if not path.is_file():
        return None
    try:
        doc = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - unreadable: not a predecessor
        return None
    same_study = str(doc.get("StudyInstanceUID", "")) == study_uid
    if same_study and str(doc.get("SOPClassUID", "")) in SR_SOP_CLASSES and str(doc.get("SOPInstanceUID", "")) != new_uid:
        return doc
    return None


def _write_report(task: StudyTask, parts: _StudyParts, digest: str) -> str:
    """Write the study's SR; return its file name, or '' when nothing was analysed."""
    if not any(r.frames for r in parts.results):
        return ""
    settings = task.settings
    name = report_file_name(task.study_uid)
    path = Path(task.out_dir) / name
    sop_uid = derived_uid("sop", task.study_uid, settings.fingerprint, digest)
    series_uid = derived_uid("series", task.study_uid, settings.fingerprint, digest)
    previous = _previous_report(path, task.study_uid, sop_uid)
    try:
        document = build_measurement_report(
            parts.results,
            parts.headers,
            previous=previous,
            segmenter=_segmenter(settings.segmenter),
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
        if settings.pseudonymize:
            Pseudonymizer.mark(document)
        buffer = io.BytesIO()
        document.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - ReportError or a bug: the study's rows still count
        logger.warning("study %s: structured report not written: %s", task.study_uid, exc)
        parts.errors.append(ErrorRow("", "report", f"structured report not written: {exc}", "", task.study_uid))
        return ""
    atomic_write_bytes(path, buffer.getvalue())
    return name


def _remove_stale_outputs(task: StudyTask, old: StudyRecord | None, keep: set[str]) -> None:
    """Delete the overlays of an older analysis of this study that this one did not rewrite."""
    if old is None:
        return
    stale = [*old.overlay_files, old.sr_file]
    for rel in stale:
        if rel and rel not in keep:
            (Path(task.out_dir) / rel).unlink(missing_ok=True)


def _check_version(settings: RunSettings) -> None:
    if settings.software_version != __version__:
        raise VersionMismatchError(
            f"worker {socket.gethostname()} runs mskus {__version__}, the coordinator mskus {settings.software_version}"
        )
    try:
        _segmenter(settings.segmenter)
        _boundary_finder(settings.muscle_boundaries)
    except ModelMismatchError as exc:
        raise VersionMismatchError(f"worker {socket.gethostname()}: {exc}") from None


def process_study(task: StudyTask) -> StudyOutcome:
    """Analyse one study and write its SR, overlays and record into ``task.out_dir``.

    Parameters
    ----------
    task : StudyTask
        The study's files and the run settings.

    Returns
    -------
    StudyOutcome
        Counts for the progress display; the rows are in the record.

    Raises
    ------
    VersionMismatchError
        This worker's mskus version or nerve model differs from the coordinator's.
    OSError
        The output folder cannot be written.
    """
    started = time.perf_counter()
    _check_version(task.settings)
    import cv2

    cv2.setNumThreads(1)  # one study per core; threads inside would only compete
    settings = task.settings
    pseudonymizer = Pseudonymizer(settings.pseudonym_key) if settings.pseudonym_key is not None else None
    old = read_record(record_path(task.out_dir, task.study_uid))
    parts = _StudyParts()
    for ref in task.files:
        _process_file(ref, task, parts, pseudonymizer)
    digest = StudyRecord(task.study_uid, settings.fingerprint, settings.overlays, tuple(parts.inputs), 0).input_digest
    sr_file = _write_report(task, parts, digest)
    _remove_stale_outputs(task, old, {*parts.overlays, sr_file})
    errors = sorted(parts.errors, key=lambda e: e.sort_key)
    record = StudyRecord(
        study_uid=task.study_uid,
        settings_fingerprint=settings.fingerprint,
        overlays=settings.overlays,
        inputs=tuple(parts.inputs),
        frames=parts.frames,
        sr_file=sr_file,
        overlay_files=tuple(parts.overlays),
        measurements=tuple(tuple(r) for r in parts.measurements),
        errors=tuple(tuple(e.cells()) for e in errors),
        summary=tuple(tuple(r) for r in summary_rows(parts.measurements)),
    )
    write_record(task.out_dir, record)
    seconds = time.perf_counter() - started
    logger.debug("study %s: %d image(s), %d frame(s) in %.1f s", task.study_uid, len(task.files), parts.frames, seconds)
    return StudyOutcome(
        study_uid=task.study_uid,
        images=len(task.files),
        frames=parts.frames,
        measured_rows=sum(1 for r in parts.measurements if r[_STATUS] == "measured"),
        error_rows=len(errors),
        sr_file=sr_file,
        seconds=seconds,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
