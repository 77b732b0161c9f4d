"""Attributes of a source image the reviewer needs: series description, laterality, mm/px.

Read from the image header only (no pixel data), with the pipeline's own
calibration rules (:func:`pipeline.calibration.calibration_for_frame`), so
the page shows the pixel size the measurement used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom

from pipeline.calibration import CalibrationSource, calibration_for_frame, regions_from_sequence
from pipeline.loading import UltrasoundImage
from pipeline.protocols import Laterality, laterality_of
from qa_review.model import FrameInfo

__all__ = ["source_frame_info"]

logger = logging.getLogger(__name__)

_SIDE = {Laterality.RIGHT: "Right", Laterality.LEFT: "Left", Laterality.BOTH: "Right and left"}


def source_frame_info(path: str | Path, frame_number: int) -> FrameInfo | None:
    """The header facts of frame ``frame_number`` (1-based) of the image at ``path``.

    Returns ``None`` when the file cannot be read (logged; the page then
    shows what the SR and the tables say).
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # noqa: BLE001 - any unreadable file: no header facts
        logger.info("source %s not readable: %s", path, exc)
        return None
    try:
        regions = UltrasoundImage(ds).regions_for_frame(frame_number - 1)
    except Exception:  # noqa: BLE001 - header too odd for the loader: shared regions only
        regions = regions_from_sequence(ds.get("SequenceOfUltrasoundRegions"))
    calibration = calibration_for_frame(ds, regions, rows, columns)
    calibrated = calibration.source is not CalibrationSource.UNCALIBRATED
    return FrameInfo(
        source_file=str(path),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        laterality=_SIDE.get(laterality_of(ds), ""),
        mm_per_px=calibration.mm_per_px if calibrated else None,
        calibration=calibration.source.value,
        flags=(calibration.note,) if calibration.note else (),
    )
