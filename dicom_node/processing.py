"""Analyse one study in a worker process and archive its results.

Runs in a separate process (spawned by :class:`~dicom_node.server.StorageNode`)
so the receiver keeps accepting associations. Input and output are small
frozen dataclasses that pickle cheaply; the pixels never cross processes.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import pydicom

from dicom_node.storage import DurableStore
from pipeline.analysis import ImageResult, analyze_image
from pipeline.errors import MskusInputError
from pipeline.loading import load_ultrasound
from pipeline.sr.sop import build_measurement_report, header_dataset, slim_result

__all__ = ["ArchivedResult", "StudyJob", "StudyOutcome", "process_study"]

logger = logging.getLogger("mskus.node.worker")


@dataclass(frozen=True)
class StudyJob:
    """One analysis run of one study."""

    data_dir: str
    study_uid: str
    run: int
    instance_paths: tuple[str, ...]
    previous_sr_path: str | None
    key_images: bool
    snapshot: float


@dataclass(frozen=True)
class ArchivedResult:
    sop_instance_uid: str
    kind: str  # "sr" or "key_image"
    path: str


@dataclass(frozen=True)
class StudyOutcome:
    run: int
    snapshot: float
    images: int
    failed_images: int
    results: tuple[ArchivedResult, ...]
    seconds: float
    error: str = ""


def _to_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def process_study(job: StudyJob) -> StudyOutcome:
    """Analyse every instance of the study, write the SR (and key images) to the archive.

    The SR supersedes the study's previous SR (Predecessor Documents) when
    there is one. Refused images make the SR PARTIAL and are named in it.
    """
    started = time.perf_counter()
    store = DurableStore(job.data_dir)
    results: list[ImageResult] = []
    headers: list[pydicom.Dataset] = []
    key_images = _KeyImages(store, job.study_uid) if job.key_images else None
    for path in job.instance_paths:
        try:
            image = load_ultrasound(path)
        except (MskusInputError, OSError) as exc:
            # Accepted on the network but not loadable now (e.g. corrupt compressed
            # pixels): the report names it as failed; nothing is guessed.
            logger.warning("event=instance_unreadable path=%s reason=%s", path, exc)
            refused = _refused_image(path, exc)
            if refused is not None:
                results.append(refused[0])
                headers.append(refused[1])
            continue
        on_frame = key_images.callback(image) if key_images is not None else None
        results.append(slim_result(analyze_image(image, on_frame=on_frame)))
        headers.append(header_dataset(image.dataset))
    archived: list[ArchivedResult] = []
    if results:
        previous = None
        if job.previous_sr_path:
            try:
                previous = pydicom.dcmread(job.previous_sr_path)
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                logger.warning("event=previous_sr_unreadable path=%s reason=%s", job.previous_sr_path, exc)
        report = build_measurement_report(results, headers, previous=previous, instance_number=job.run)
        path = store.store_result(job.study_uid, str(report.SOPInstanceUID), _to_bytes(report))
        archived.append(ArchivedResult(str(report.SOPInstanceUID), "sr", str(path)))
        if key_images is not None:
            archived.extend(key_images.archived)
    failed = sum(1 for r in results if r.failed) + (len(job.instance_paths) - len(results))
    return StudyOutcome(
        run=job.run,
        snapshot=job.snapshot,
        images=len(job.instance_paths),
        failed_images=failed,
        results=tuple(archived),
        seconds=time.perf_counter() - started,
        error="" if results else "no instance of the study could be read",
    )


def _refused_image(path: str, exc: Exception) -> tuple[ImageResult, pydicom.Dataset] | None:
    """An ImageResult that records why ``path`` was refused, with its header if readable."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not even a header: only the log can tell
        return None
    code = exc.code if isinstance(exc, MskusInputError) else "unreadable"
    result = ImageResult(
        source_file=path,
        sop_instance_uid=str(header.get("SOPInstanceUID", "")),
        sop_class_uid=str(header.get("SOPClassUID", "")),
        study_instance_uid=str(header.get("StudyInstanceUID", "")),
        series_instance_uid=str(header.get("SeriesInstanceUID", "")),
        error=str(exc),
        error_code=code,
    )
    return result, header


class _KeyImages:
    """Key images of one study run, archived as they are drawn: one series, numbered instances."""

    def __init__(self, store: DurableStore, study_uid: str) -> None:
        self.store = store
        self.study_uid = study_uid
        self.series_uid = pydicom.uid.generate_uid()
        self.archived: list[ArchivedResult] = []

    def callback(self, image):
        from pipeline.keyimage import build_key_image
        from pipeline.overlay import draw_overlay

        def write(frame, frame_result) -> None:
            key = build_key_image(
                draw_overlay(frame, frame_result),
                image.dataset,
                frame_number=frame.frame_number,
                series_instance_uid=self.series_uid,
                instance_number=len(self.archived) + 1,
            )
            path = self.store.store_result(self.study_uid, str(key.SOPInstanceUID), _to_bytes(key))
            self.archived.append(ArchivedResult(str(key.SOPInstanceUID), "key_image", str(path)))

        return write
