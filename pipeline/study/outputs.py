"""The one output layout of an analysed study (CONTRACT.md section 2).

``mskus batch``, ``mskus analyze --out`` and the node's ``results/`` folder
all write a study the same way, into an output folder:

- ``SR_<study>.dcm``: the study's SR (:func:`pipeline.sr.sop.report_file_name`);
- ``overlays/<study>/<sop>_frameNNNN.png``: a QA overlay per analysed frame,
  and with key images ``key_images/<study>/<sop>_frameNNNN_key.dcm`` (the
  same drawing as a DICOM Secondary Capture), both written by
  :class:`FrameOutputWriter`, the per-frame hook of the runner;
- ``.mskus-batch/studies/<key>.json``: the study record (inputs, settings
  fingerprint, output files, table rows), from which
  :func:`pipeline.batch.assemble.assemble_outputs` rebuilds
  ``measurements.csv``, ``errors.csv``, ``summary.csv`` and the manifest.

The record is written last: a study whose record is there is complete.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import cv2
from pydicom.dataset import Dataset

from pipeline.analysis import FrameResult
from pipeline.atomic import atomic_write_bytes
from pipeline.batch.overlays import overlay_rel_path, tissue_only_frame
from pipeline.batch.pseudonym import Pseudonymizer
from pipeline.batch.records import StudyRecord, read_record, record_path, write_record
from pipeline.batch.settings import RunSettings
from pipeline.batch.summary import summary_rows
from pipeline.batch.tables import ErrorRow, measurement_cells
from pipeline.filenames import uid_file_name
from pipeline.loading import UltrasoundFrame, UltrasoundImage
from pipeline.overlay import draw_overlay
from pipeline.reference import finding_cells
from pipeline.sr.sop import report_file_name
from pipeline.study.report import build_study_report, earlier_report
from pipeline.study.runner import StudyAnalysis

__all__ = ["KEY_IMAGE_DIR", "FrameOutputWriter", "derived_uid", "key_image_rel_path", "write_study_outputs"]

logger = logging.getLogger(__name__)

_UID_NAMESPACE = "mskus-batch-sr-v1"
KEY_IMAGE_DIR = "key_images"


def derived_uid(*parts: str) -> str:
    """A reproducible ``2.25.`` UID from ``parts`` (same inputs and settings, same SR UIDs)."""
    digest = hashlib.sha256("\x1f".join([_UID_NAMESPACE, *parts]).encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def key_image_rel_path(study_uid: str, sop_instance_uid: str, frame_number: int) -> str:
    """Path of a frame's key image relative to the output folder (POSIX separators)."""
    return f"{KEY_IMAGE_DIR}/{uid_file_name(study_uid)}/{uid_file_name(sop_instance_uid)}_frame{frame_number:04d}_key.dcm"


class FrameOutputWriter:
    """Per-frame hook of :func:`pipeline.study.analyze_study`: the QA overlay PNG and/or key image of each frame.

    The overlay is drawn once per frame and written as a PNG, a DICOM key
    image (Secondary Capture in one new series per study), or both.

    Parameters
    ----------
    out_dir : path
        The output folder.
    study_uid : str
        The study (names the sub-folders and the key-image series).
    overlays, key_images : bool
        What to write.
    tissue_only : bool
        Black out everything outside the tissue region first (pseudonymised runs).
    """

    def __init__(
        self, out_dir: str | Path, study_uid: str, *, overlays: bool = True, key_images: bool = False, tissue_only: bool = False
    ) -> None:
        self.out_dir = Path(out_dir)
        self.study_uid = study_uid
        self.overlays = overlays
        self.key_images = key_images
        self.tissue_only = tissue_only
        self.key_series_uid = derived_uid("key-images", study_uid, str(self.out_dir))
        self.written: list[str] = []

    @property
    def active(self) -> bool:
        return self.overlays or self.key_images

    def __call__(self, image: UltrasoundImage, frame: UltrasoundFrame, result: FrameResult) -> None:
        drawing = draw_overlay(tissue_only_frame(frame) if self.tissue_only else frame, result)
        if self.overlays:
            rel = overlay_rel_path(self.study_uid, frame.sop_instance_uid, frame.frame_number)
            ok, encoded = cv2.imencode(".png", drawing)
            if not ok:
                raise OSError(f"cannot encode overlay {rel}")
            (self.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out_dir / rel, encoded.tobytes())
            self.written.append(rel)
        if self.key_images:
            from pipeline.keyimage import build_key_image

            number = sum(1 for w in self.written if w.startswith(KEY_IMAGE_DIR)) + 1
            key = build_key_image(
                drawing,
                image.dataset,
                frame_number=frame.frame_number,
                series_instance_uid=self.key_series_uid,
                instance_number=number,
                sop_instance_uid=derived_uid("key-image", self.key_series_uid, frame.sop_instance_uid, str(frame.frame_number)),
            )
            rel = key_image_rel_path(self.study_uid, frame.sop_instance_uid, frame.frame_number)
            (self.out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out_dir / rel, _encoded(key))
            self.written.append(rel)


def _encoded(document: Dataset) -> bytes:
    buffer = io.BytesIO()
    document.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _input_digest(study: StudyAnalysis, settings: RunSettings) -> str:
    return StudyRecord(study.study_uid, settings.fingerprint, settings.overlays, study.inputs, 0).input_digest


def write_study_outputs(
    out_dir: str | Path,
    study: StudyAnalysis,
    settings: RunSettings,
    *,
    overlay_files: tuple[str, ...] = (),
    report: Dataset | None = None,
) -> StudyRecord:
    """Write the study's SR and record into ``out_dir``; remove what an older run of it left.

    Parameters
    ----------
    out_dir : path
        The output folder.
    study : StudyAnalysis
        What :func:`pipeline.study.analyze_study` gave.
    settings : RunSettings
        Analysis and output settings (fingerprint, pseudonymisation).
    overlay_files : tuple of str
        Overlays and key images written for this study (relative to ``out_dir``).
    report : Dataset, optional
        The study's SR when the caller built it already (the node, which
        numbers its versions); else it is built here with UIDs derived from
        the study, its inputs and the settings, superseding the SR an older
        run left in ``out_dir``.

    Returns
    -------
    StudyRecord
        The record written (its rows are the study's table rows).

    Raises
    ------
    OSError
        The output folder cannot be written.
    """
    out = Path(out_dir)
    errors = list(study.errors)
    sr_file = ""
    if study.analysed:
        name = report_file_name(study.study_uid)
        try:
            if report is None:
                digest = _input_digest(study, settings)
                sop_uid = derived_uid("sop", study.study_uid, settings.fingerprint, digest)
                report = build_study_report(
                    study,
                    previous=earlier_report(out / name, study.study_uid, new_uid=sop_uid),
                    sop_instance_uid=sop_uid,
                    series_instance_uid=derived_uid("series", study.study_uid, settings.fingerprint, digest),
                    reference_files=settings.analysis.reference.files,
                )
                if settings.pseudonymize:
                    Pseudonymizer.mark(report)
            encoded = _encoded(report)
        except Exception as exc:  # noqa: BLE001 - ReportError or a bug: the study's rows still count
            logger.warning("study %s: structured report not written: %s", study.study_uid, exc)
            errors.append(ErrorRow("", "report", f"structured report not written: {exc}", "", study.study_uid))
        else:
            atomic_write_bytes(out / name, encoded)
            sr_file = name
    old = read_record(record_path(out, study.study_uid))
    if old is not None:
        keep = {*overlay_files, sr_file}
        for rel in (*old.overlay_files, old.sr_file):
            if rel and rel not in keep:
                (out / rel).unlink(missing_ok=True)
    measurements = [measurement_cells(row, context, reading) for row, context, reading in study.measurement_rows()]
    record = StudyRecord(
        study_uid=study.study_uid,
        settings_fingerprint=settings.fingerprint,
        overlays=settings.overlays,
        inputs=study.inputs,
        frames=study.frames,
        sr_file=sr_file,
        overlay_files=tuple(overlay_files),
        measurements=tuple(tuple(r) for r in measurements),
        errors=tuple(tuple(e.cells()) for e in sorted(errors, key=lambda e: e.sort_key)),
        summary=tuple(tuple(r) for r in summary_rows(measurements)),
        findings=tuple(tuple(finding_cells(study.study_uid, f)) for f in study.findings),
        events=tuple(tuple(row.cells()) for row in study.event_rows()),
    )
    write_record(out, record)
    return record
