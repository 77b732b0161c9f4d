"""QA overlay PNGs of a batch run: one per analysed frame.

Files go to ``OUT_DIR/overlays/<StudyInstanceUID>/<SOPInstanceUID>_frameNNNN.png``
(UIDs, not input file names, which often repeat across studies: ``IM_0001``).
With ``--pseudonymize`` everything outside the tissue region (where
scanners burn in the patient's name) is blacked out before drawing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from pipeline.analysis import FrameResult
from pipeline.atomic import atomic_write_bytes
from pipeline.filenames import uid_file_name
from pipeline.loading import UltrasoundFrame
from pipeline.overlay import draw_overlay

__all__ = ["OVERLAY_DIR", "overlay_rel_path", "tissue_only_frame", "write_overlay"]

OVERLAY_DIR = "overlays"


def overlay_rel_path(study_uid: str, sop_instance_uid: str, frame_number: int) -> str:
    """Path of a frame's overlay relative to OUT_DIR (POSIX separators)."""
    return f"{OVERLAY_DIR}/{uid_file_name(study_uid)}/{uid_file_name(sop_instance_uid)}_frame{frame_number:04d}.png"


def tissue_only_frame(frame: UltrasoundFrame) -> UltrasoundFrame:
    """The frame with everything outside the tissue region blacked out (where scanners burn in names)."""
    box = frame.calibration.tissue_box
    keep = np.zeros(frame.gray.shape, dtype=bool)
    keep[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = True
    gray = np.where(keep, frame.gray, 0).astype(np.uint8)
    color = None if frame.color is None else np.where(keep[..., None], frame.color, 0).astype(np.uint8)
    return dataclasses.replace(frame, gray=gray, color=color)


def write_overlay(
    out_dir: str | Path,
    study_uid: str,
    frame: UltrasoundFrame,
    result: FrameResult,
    *,
    tissue_only: bool = False,
) -> str:
    """Draw and write one frame's overlay atomically; return its path relative to ``out_dir``."""
    rel = overlay_rel_path(study_uid, frame.sop_instance_uid, frame.frame_number)
    path = Path(out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    image = draw_overlay(tissue_only_frame(frame) if tissue_only else frame, result)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode overlay {rel}")
    atomic_write_bytes(path, encoded.tobytes())
    return rel
