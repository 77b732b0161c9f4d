"""Typed errors for input the pipeline refuses.

Every error carries a one-line, human-readable reason in ``str(error)``
that is suitable for a log line, a CSV ``reason`` column or a DICOM status
comment. Callers catch :class:`MskusInputError` to handle all of them.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

#: ``error_code`` of an image refused because the program failed on it (a bug or an input no check foresaw).
INTERNAL_ERROR = "internal_error"


class MskusInputError(Exception):
    """Base class: the input cannot be analysed, for a stated reason."""

    #: Short machine-readable code, stable across versions.
    code: str = "input_error"

    def __init__(self, reason: str) -> None:
        # One line only: a reason is printed in logs and CSV cells.
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return str(self)


class NotDicomError(MskusInputError):
    """The file is not a DICOM Part 10 file or dataset."""

    code = "not_dicom"


class TruncatedFileError(MskusInputError):
    """The file ends before its declared content (for example mid pixel data)."""

    code = "truncated"


class MalformedElementError(MskusInputError):
    """An element cannot be decoded (unknown VR, a length that does not fit its VR, ...)."""

    code = "malformed"


class NotUltrasoundError(MskusInputError):
    """The dataset is not an ultrasound image (reason names the modality)."""

    code = "not_ultrasound"


class NoPixelDataError(MskusInputError):
    """The dataset has no Pixel Data element."""

    code = "no_pixel_data"


class UnsupportedPhotometricError(MskusInputError):
    """Photometric Interpretation or pixel layout the loader cannot convert."""

    code = "unsupported_photometric"


class UndecodablePixelDataError(MskusInputError):
    """Compressed (or malformed) pixel data that no installed decoder can decode."""

    code = "undecodable"


class CalibrationError(MskusInputError):
    """A physical measurement the calibration cannot support.

    Raised, for example, when the measured pixels span two ultrasound regions,
    lie in a region whose units are not centimetres, or the image is
    uncalibrated.
    """

    code = "calibration"


class UncalibratedError(CalibrationError):
    """A mm or mm² value was requested from an uncalibrated frame."""

    code = "uncalibrated"


class UsageError(Exception):
    """A user error in command-line arguments or configuration (one line, exit 2)."""


def internal_error(source: str | os.PathLike[str] | None, stage: str, exc: BaseException) -> str:
    """The one-line refusal for an unexpected exception while handling one image, logged with the file.

    Parameters
    ----------
    source : path or None
        The image's file (``None``: in memory).
    stage : str
        What was being done, e.g. ``"loading"`` or ``"analysing frame 3"``.
    exc : BaseException
        The exception; its type and message go into the reason, its traceback
        into the log at debug level only.

    Returns
    -------
    str
        ``"internal error while <stage>: <Type>: <message>"`` on one line.
    """
    reason = " ".join(f"internal error while {stage}: {type(exc).__name__}: {exc}".split())
    logger.warning("%s: %s", source if source is not None else "<dataset>", reason)
    logger.debug("traceback of the internal error", exc_info=exc)
    return reason
