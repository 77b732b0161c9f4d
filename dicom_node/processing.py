"""Analyse one study in a worker process and archive its results.

Runs in a separate process (spawned by :class:`~dicom_node.server.StorageNode`)
so the receiver keeps accepting associations. Input and output are small
frozen dataclasses that pickle cheaply; the pixels never cross processes.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from dataclasses import dataclass

import pydicom

from dicom_node.logsafe import install
from dicom_node.storage import DurableStore
from pipeline.analysis import ImageResult, analyze_image
from pipeline.errors import INTERNAL_ERROR, MskusInputError, internal_error
from pipeline.loading import check_elements, load_ultrasound
from pipeline.sr.sop import build_measurement_report, header_dataset, slim_result

__all__ = ["ArchivedResult", "ParentGone", "StudyJob", "StudyOutcome", "init_worker", "process_study", "require_parent"]

logger = logging.getLogger("mskus.node.worker")
install(logger.name, "pipeline.errors")

#: The node process that started this worker (set by :func:`init_worker`; ``None`` in the node itself).
_PARENT_PID: int | None = None


class ParentGone(RuntimeError):
    """The node process that started this worker has died: the worker must not write anything."""


def require_parent() -> None:
    """Raise :class:`ParentGone` when this worker's node process is no longer its parent."""
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        raise ParentGone(f"node process {_PARENT_PID} is gone")


def init_worker(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """Worker initializer: the worker dies with its node process.

    A worker whose node was killed (``kill -9``, OOM killer) would otherwise
    finish its study and write an SR that no index row knows. A daemon thread
    watches the parent and ends the worker within ``poll_seconds``;
    :func:`require_parent` is checked again right before a result is written.
    """
    global _PARENT_PID
    _PARENT_PID = parent_pid

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent_pid:
                os._exit(70)  # EX_SOFTWARE; no cleanup: the node's restart redoes the study

    threading.Thread(target=watch, name="mskus-parent-watch", daemon=True).start()


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
        analysed = _analyse_instance(path, key_images)
        if analysed is not None:
            results.append(analysed[0])
            headers.append(analysed[1])
    archived: list[ArchivedResult] = []
    if results:
        previous = None
        if job.previous_sr_path:
            try:
                previous = pydicom.dcmread(job.previous_sr_path)
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                logger.warning("event=previous_sr_unreadable path=%s reason=%s", job.previous_sr_path, exc)
        report = _build_report(results, headers, previous, job.run)
        require_parent()  # a worker whose node is gone writes nothing no index row would know
        sr_path = store.store_result(job.study_uid, str(report.SOPInstanceUID), _to_bytes(report))
        archived.append(ArchivedResult(str(report.SOPInstanceUID), "sr", str(sr_path)))
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


def _analyse_instance(path: str, key_images: _KeyImages | None) -> tuple[ImageResult, pydicom.Dataset] | None:
    """One instance's result and header; any failure is a refusal of this instance only.

    Returns ``None`` when not even a header can be read (the log line is then
    the only trace: the report cannot name an image it cannot identify).
    """
    try:
        image = load_ultrasound(path)
    except (MskusInputError, OSError) as exc:
        # Accepted on the network but not loadable now (e.g. corrupt compressed
        # pixels): the report names it as failed; nothing is guessed.
        code = exc.code if isinstance(exc, MskusInputError) else "unreadable"
        logger.warning("event=instance_refused path=%s code=%s reason=%s", path, code, exc)
        return _refused_image(path, str(exc), code)
    except Exception as exc:  # noqa: BLE001 - one bad instance never costs the study
        reason = internal_error(path, "loading", exc)
        logger.warning("event=instance_refused path=%s code=%s reason=%s", path, INTERNAL_ERROR, reason)
        return _refused_image(path, reason, INTERNAL_ERROR)
    try:
        on_frame = key_images.callback(image) if key_images is not None else None
        result = slim_result(analyze_image(image, on_frame=on_frame))
        header = header_dataset(image.dataset)
    except Exception as exc:  # noqa: BLE001 - one bad instance never costs the study
        reason = internal_error(path, "analysing", exc)
        logger.warning("event=instance_refused path=%s code=%s reason=%s", path, INTERNAL_ERROR, reason)
        return _refused_image(path, reason, INTERNAL_ERROR)
    if result.failed:
        logger.warning("event=instance_refused path=%s code=%s reason=%s", path, result.error_code, result.error)
    return result, header


def _build_report(results: list[ImageResult], headers: list[pydicom.Dataset], previous, run: int) -> pydicom.Dataset:
    """The study's SR; if a refused image's header breaks it, the SR is built from the analysed images alone."""
    try:
        return build_measurement_report(results, headers, previous=previous, instance_number=run)
    except Exception as exc:  # noqa: BLE001 - retried below without the refused images' headers
        kept = [(r, h) for r, h in zip(results, headers) if not r.failed]
        if not kept or len(kept) == len(results):
            raise
        logger.warning("event=report_without_refused_images reason=%s: %s", type(exc).__name__, exc)
        return build_measurement_report(
            [r for r, _ in kept], [h for _, h in kept], previous=previous, instance_number=run
        )


def _clean_header(path: str) -> pydicom.Dataset:
    """The header of ``path`` (no pixel data) with every element that cannot be decoded left out."""
    raw = pydicom.dcmread(path, stop_before_pixels=True)
    header = pydicom.Dataset()
    for tag in list(raw.keys()):
        try:
            element = raw[tag]
            if element.VR == "SQ":
                for item in element.value:
                    check_elements(item)
        except Exception:  # noqa: BLE001 - the malformed element is what got the image refused
            continue
        header.add(element)
    header.file_meta = raw.file_meta
    return header_dataset(header)


def _refused_image(path: str, reason: str, code: str) -> tuple[ImageResult, pydicom.Dataset] | None:
    """An ImageResult that records why ``path`` was refused, with its header if readable."""
    try:
        header = _clean_header(path)
        uids = [str(header.get(k, "") or "") for k in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")]
    except Exception:  # noqa: BLE001 - not even a header: only the log can tell
        return None
    if not uids[0] or not uids[1]:
        return None  # an image the report cannot reference
    result = ImageResult(
        source_file=path,
        sop_instance_uid=uids[0],
        sop_class_uid=uids[1],
        study_instance_uid=uids[2],
        series_instance_uid=uids[3],
        error=reason,
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
            require_parent()
            path = self.store.store_result(self.study_uid, str(key.SOPInstanceUID), _to_bytes(key))
            self.archived.append(ArchivedResult(str(key.SOPInstanceUID), "key_image", str(path)))

        return write
