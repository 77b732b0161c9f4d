"""The per-study work of a batch run: :func:`pipeline.study.analyze_study`, then the study's outputs.

:func:`process_study` is what runs in a worker process (local pool) or on a
Dask worker. It needs nothing from the coordinator but the
:class:`~pipeline.batch.plan.StudyTask` and returns a small
:class:`StudyOutcome`; the rows are in the study record it writes.

Input problems become error rows; only a broken output folder (or a bug)
makes it raise.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from pipeline.batch.plan import StudyTask
from pipeline.batch.pseudonym import Pseudonymizer
from pipeline.settings import Analyzer, ModelMismatchError, build_analyzer
from pipeline.study import StudyFile, analyze_study
from pipeline.study.outputs import FrameOutputWriter, write_study_outputs

__all__ = ["StudyOutcome", "VersionMismatchError", "process_study"]

logger = logging.getLogger(__name__)


class VersionMismatchError(RuntimeError):
    """A worker runs another mskus version, or has another model, than the coordinator."""


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


def _analyzer(task: StudyTask) -> Analyzer:
    try:
        return build_analyzer(task.settings.analysis)
    except ModelMismatchError as exc:
        raise VersionMismatchError(f"worker {socket.gethostname()}: {exc}") from None


def process_study(task: StudyTask) -> StudyOutcome:
    """Analyse one study and write its SR, overlays and record into ``task.out_dir``.

    Raises
    ------
    VersionMismatchError
        This worker's mskus version or a model differs from the coordinator's.
    OSError
        The output folder cannot be written.
    """
    started = time.perf_counter()
    analyzer = _analyzer(task)
    import cv2

    cv2.setNumThreads(1)  # one study per core; threads inside would only compete
    settings = task.settings
    outputs = FrameOutputWriter(
        task.out_dir, task.study_uid, overlays=settings.overlays, key_images=settings.key_images, tissue_only=settings.pseudonymize
    )
    study = analyze_study(
        [StudyFile(f.path, f.rel, f.sop_instance_uid, f.frames) for f in task.files],
        analyzer,
        study_uid=task.study_uid,
        on_frame=outputs if outputs.active else None,
        header_editor=Pseudonymizer(settings.pseudonym_key) if settings.pseudonym_key is not None else None,
    )
    record = write_study_outputs(task.out_dir, study, settings, overlay_files=tuple(outputs.written))
    seconds = time.perf_counter() - started
    logger.debug("study %s: %d image(s), %d frame(s) in %.1f s", task.study_uid, len(task.files), study.frames, seconds)
    return StudyOutcome(
        study_uid=task.study_uid,
        images=len(task.files),
        frames=study.frames,
        measured_rows=sum(1 for row, _, _ in study.measurement_rows() if row.status.value == "measured"),
        error_rows=len(record.errors),
        sr_file=record.sr_file,
        seconds=seconds,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
