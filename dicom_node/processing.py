"""Analyse one study in a worker process and archive its results.

Runs in a separate process (spawned by :class:`~dicom_node.server.StorageNode`)
so the receiver keeps accepting associations. Input and output are small
frozen dataclasses that pickle cheaply; the pixels never cross processes.
The analysis is :func:`pipeline.study.analyze_study`, as for ``mskus
analyze`` and ``mskus batch``; its SR goes into the archive (for sending,
versioned) and, with the study record, into ``<data>/results/`` in the
batch output layout (its record; ``measurements.csv``, ``errors.csv``, ...
are rebuilt after it by :mod:`dicom_node.results_tables`), which
``mskus review --out`` reads like any batch output.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom

from dicom_node.logsafe import install
from dicom_node.results_tables import RESULTS_FOLDER
from dicom_node.storage import DurableStore
from pipeline.batch.lock import output_lock
from pipeline.batch.records import STATE_DIR
from pipeline.batch.settings import RunSettings
from pipeline.loading import UltrasoundFrame, UltrasoundImage
from pipeline.settings import AnalysisSettings, build_analyzer
from pipeline.study import StudyFile, analyze_study
from pipeline.study.outputs import write_study_outputs
from pipeline.study.report import build_study_report

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
    analysis: AnalysisSettings


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


def _previous(path: str | None) -> pydicom.Dataset | None:
    if not path:
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        logger.warning("event=previous_sr_unreadable path=%s reason=%s", path, exc)
        return None


def process_study(job: StudyJob) -> StudyOutcome:
    """Analyse every instance of the study, write the SR (and key images) to the archive.

    The SR supersedes the study's previous SR (Predecessor Documents) when
    there is one. Refused images make the SR PARTIAL and are named in it.
    """
    started = time.perf_counter()
    store = DurableStore(job.data_dir)
    key_images = _KeyImages(store, job.study_uid) if job.key_images else None
    root = Path(job.data_dir)
    files = [StudyFile(path, _inbox_name(root, path)) for path in job.instance_paths]
    study = analyze_study(files, build_analyzer(job.analysis), study_uid=job.study_uid, on_frame=key_images)
    for error in study.errors:
        logger.warning("event=instance_refused path=%s code=%s reason=%s", error.source_file, error.code, error.reason)
    archived: list[ArchivedResult] = []
    report = None
    if study.reportable:
        report = build_study_report(
            study,
            previous=_previous(job.previous_sr_path),
            instance_number=job.run,
            reference_files=job.analysis.reference.files,
        )
        require_parent()  # a worker whose node is gone writes nothing no index row would know
        sr_path = store.store_result(job.study_uid, str(report.SOPInstanceUID), _to_bytes(report))
        archived.append(ArchivedResult(str(report.SOPInstanceUID), "sr", str(sr_path)))
        if key_images is not None:
            archived.extend(key_images.archived)
    _write_study_record(root, study, job, report)
    return StudyOutcome(
        run=job.run,
        snapshot=job.snapshot,
        images=len(job.instance_paths),
        failed_images=study.failed_images + (len(job.instance_paths) - len(study.images)),
        results=tuple(archived),
        seconds=time.perf_counter() - started,
        error="" if study.reportable else "no instance of the study could be read",
    )


def _inbox_name(root: Path, path: str) -> str:
    """An instance's name in the results tables: its path inside the data folder."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _write_study_record(root: Path, study, job: StudyJob, report: pydicom.Dataset | None) -> None:
    """The study's record and SR copy in ``<data>/results/`` (batch layout); the tables follow
    (:mod:`dicom_node.results_tables`). A failure here never costs the archive."""
    out = root / RESULTS_FOLDER
    settings = RunSettings(analysis=job.analysis, overlays=False)
    try:
        state = out / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        with output_lock(state, wait=True):  # the node's workers and the tables' rebuild take turns
            write_study_outputs(out, study, settings, report=report)
    except Exception as exc:  # noqa: BLE001 - the archive and the send are what matter; the next run redoes it
        logger.warning("event=results_record_not_written study=%s reason=%s: %s", job.study_uid, type(exc).__name__, exc)


class _KeyImages:
    """Per-frame hook: key images of one study run, archived as they are drawn (one series, numbered)."""

    def __init__(self, store: DurableStore, study_uid: str) -> None:
        self.store = store
        self.study_uid = study_uid
        self.series_uid = pydicom.uid.generate_uid()
        self.archived: list[ArchivedResult] = []

    def __call__(self, image: UltrasoundImage, frame: UltrasoundFrame, result) -> None:
        from pipeline.keyimage import build_key_image
        from pipeline.overlay import draw_overlay

        key = build_key_image(
            draw_overlay(frame, result),
            image.dataset,
            frame_number=frame.frame_number,
            series_instance_uid=self.series_uid,
            instance_number=len(self.archived) + 1,
        )
        require_parent()
        path = self.store.store_result(self.study_uid, str(key.SOPInstanceUID), _to_bytes(key))
        self.archived.append(ArchivedResult(str(key.SOPInstanceUID), "key_image", str(path)))
