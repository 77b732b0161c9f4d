"""Entry point: the fasciculation analysis of one ultrasound image.

:func:`analyze_clip` decodes the image's frames one at a time and runs the
detector; it returns ``None`` for an image that is not a muscle cine (a
nerve protocol, a single frame), so a still image gets no fasciculation
values at all. :func:`start_clip_analysis` is the same set-up for a caller
that already decodes every frame (the study runner's per-frame loop) and
wants to feed them to the detector without decoding twice.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.calibration import FrameCalibration, PixelBox
from pipeline.cine.detector import FasciculationDetector
from pipeline.cine.result import FasciculationResult
from pipeline.cine.settings import FasciculationSettings
from pipeline.cine.timing import NoFrameTimingError, frame_timing
from pipeline.errors import MskusInputError
from pipeline.loading import UltrasoundImage
from pipeline.protocols import Protocol, ProtocolChoice

__all__ = ["analyze_clip", "is_muscle_cine", "start_clip_analysis"]

logger = logging.getLogger(__name__)


def is_muscle_cine(image: UltrasoundImage, choice: ProtocolChoice | None) -> bool:
    """The image is a multi-frame clip measured with the muscle protocol."""
    return choice is not None and choice.protocol is Protocol.MUSCLE and image.number_of_frames > 1


def start_clip_analysis(
    image: UltrasoundImage,
    choice: ProtocolChoice | None,
    calibration: FrameCalibration,
    *,
    roi: PixelBox | None = None,
    roi_mask: np.ndarray | None = None,
    settings: FasciculationSettings | None = None,
) -> FasciculationDetector | FasciculationResult | None:
    """Set up the analysis of a clip whose frames the caller will push.

    Parameters
    ----------
    image : UltrasoundImage
        The clip (its header is read for the frame timing).
    choice : ProtocolChoice or None
        The protocol chosen for the image.
    calibration : FrameCalibration
        The first frame's calibration (mm per pixel and tissue region).
    roi : PixelBox, optional
        Frame pixels to analyse; default the tissue region.
    roi_mask : ndarray of bool, optional
        Frame-sized muscle mask (e.g. the muscle measurement's ROI); cells
        mostly outside it are not searched.
    settings : FasciculationSettings, optional

    Returns
    -------
    FasciculationDetector
        Push every frame's ``gray`` (in order), then call ``finish()``.
    FasciculationResult
        Refused (no frame timing, no calibration, ROI too small): the reason is in it.
    None
        Not a muscle cine: no fasciculation values for this image.
    """
    if not is_muscle_cine(image, choice):
        return None
    settings = settings or FasciculationSettings()
    parameters = settings.as_parameters()
    n = image.number_of_frames
    try:
        timing = frame_timing(image.dataset, n)
    except NoFrameTimingError as exc:
        return FasciculationResult.refused(str(exc), number_of_frames=n, parameters=parameters)
    if not calibration.is_calibrated or calibration.mm_per_px_x is None or calibration.mm_per_px_y is None:
        return FasciculationResult.refused(
            f"fasciculation not analysed: {calibration.note or 'the frames are not calibrated'} (mm per pixel unknown)",
            number_of_frames=n, parameters=parameters,
        )
    try:
        return FasciculationDetector(
            timing, roi or calibration.tissue_box, calibration.mm_per_px_x, calibration.mm_per_px_y,
            roi_mask=roi_mask, settings=settings,
        )
    except ValueError as exc:
        return FasciculationResult.refused(f"fasciculation not analysed: {exc}", number_of_frames=n, parameters=parameters)


def analyze_clip(
    image: UltrasoundImage,
    choice: ProtocolChoice | None,
    *,
    roi: PixelBox | None = None,
    roi_mask: np.ndarray | None = None,
    settings: FasciculationSettings | None = None,
) -> FasciculationResult | None:
    """Fasciculations of a muscle cine clip, decoding one frame at a time.

    Parameters
    ----------
    image : UltrasoundImage
        From :func:`pipeline.loading.load_ultrasound`.
    choice : ProtocolChoice or None
        The protocol chosen for the image (``rules.choose(image.dataset)``).
    roi, roi_mask, settings
        As for :func:`start_clip_analysis`.

    Returns
    -------
    FasciculationResult or None
        ``None`` when the image is not a muscle cine; a refused result (with
        ``refusal_reason``) when it cannot be analysed.
    """
    if not is_muscle_cine(image, choice):
        return None
    frames = image.iter_frames()
    try:
        first = next(frames)
    except MskusInputError as exc:
        return FasciculationResult.refused(f"fasciculation not analysed: {exc}", number_of_frames=image.number_of_frames)
    started = start_clip_analysis(image, choice, first.calibration, roi=roi, roi_mask=roi_mask, settings=settings)
    if not isinstance(started, FasciculationDetector):
        return started
    started.push(first.gray)
    del first
    try:
        for frame in frames:
            started.push(frame.gray)
    except MskusInputError as exc:
        return FasciculationResult.refused(
            f"fasciculation not analysed: {exc}", number_of_frames=image.number_of_frames, parameters=started.settings.as_parameters()
        )
    return started.finish()
