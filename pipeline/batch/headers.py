"""First pass: read only the header of each input (no pixel data).

The header says which study an image belongs to, how many frames it has and
which protocol it gets, and it is enough to refuse the inputs that need no
worker: files that are not DICOM, not ultrasound, or match no protocol. The
reasons are those of :mod:`pipeline.loading` (the typed errors' one-line
messages); where the short read fails, the full reader is asked for the
canonical reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pydicom

from pipeline.batch.tables import ErrorRow
from pipeline.errors import MskusInputError, NoPixelDataError
from pipeline.inputs import InputFile
from pipeline.loading import read_dataset, validate_dataset
from pipeline.protocols import ProtocolRules

__all__ = ["NO_PROTOCOL_HINT", "ImageHeader", "read_header"]

logger = logging.getLogger(__name__)

#: Appended to "no protocol matched": how to choose one in ``mskus batch``.
NO_PROTOCOL_HINT = "choose one with --protocol nerve|muscle, or add a rule (--config RULES.yaml)"


@dataclass(frozen=True)
class ImageHeader:
    """What the coordinator keeps of an image: enough to plan, nothing more."""

    file: InputFile
    study_uid: str
    sop_instance_uid: str
    frames: int


def _error_from_full_read(file: InputFile, short_read_error: BaseException) -> ErrorRow:
    """The canonical reason for a file whose header could not be read."""
    try:
        read_dataset(file.path)
    except MskusInputError as exc:
        return ErrorRow(file.rel, exc.code, str(exc))
    except OSError as exc:
        return ErrorRow(file.rel, "unreadable", f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - a reader bug must not stop the run
        return ErrorRow(file.rel, "unreadable", f"file is not readable DICOM: {type(exc).__name__}: {exc}")
    return ErrorRow(file.rel, "unreadable", f"file header is not readable: {type(short_read_error).__name__}: {short_read_error}")


def read_header(file: InputFile, rules: ProtocolRules, *, protocol: str | None = None) -> ImageHeader | ErrorRow:
    """Read the header of ``file`` and check what can be checked without pixels.

    Returns
    -------
    ImageHeader or ErrorRow
        The image to analyse, or why it will not be.
    """
    try:
        ds = pydicom.dcmread(file.path, stop_before_pixels=True)
    except OSError as exc:
        return ErrorRow(file.rel, "unreadable", f"cannot read file: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed input
        return _error_from_full_read(file, exc)
    if len(ds) == 0:
        return _error_from_full_read(file, ValueError("empty dataset"))
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    try:
        # Modality / SOP class. Pixel data was not read, so its absence says nothing yet.
        validate_dataset(ds)
    except NoPixelDataError:
        pass
    except MskusInputError as exc:
        return ErrorRow(file.rel, exc.code, str(exc), sop_uid, study_uid)
    try:
        rules.choose(ds, override=protocol)
    except MskusInputError as exc:
        # Say the way out in this command's own options (the storage node has no --protocol).
        return ErrorRow(file.rel, exc.code, f"{exc}; {NO_PROTOCOL_HINT}", sop_uid, study_uid)
    if not study_uid:
        return ErrorRow(file.rel, "no_study", "no Study Instance UID: the image cannot be grouped into a study", sop_uid)
    if not sop_uid:
        return ErrorRow(file.rel, "no_sop_instance", "no SOP Instance UID: the image cannot be referenced", "", study_uid)
    try:
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        frames = 1
    return ImageHeader(file=file, study_uid=study_uid, sop_instance_uid=sop_uid, frames=frames)
