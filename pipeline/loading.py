"""Load ultrasound DICOM into frames ready to measure.

:func:`load_ultrasound` reads a file (once) or takes a dataset, checks that
it is an ultrasound image it can decode, and returns an
:class:`UltrasoundImage`. Its frames are decoded lazily, one at a time, from
the pixel data already in memory, so a 1,000-frame cine never needs more than
one decoded frame (plus its 8-bit gray and colour copies) at once.

Every refusal is a subclass of :class:`~pipeline.errors.MskusInputError`
with a one-line reason.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.uid import UID

from pipeline.calibration import (
    FrameCalibration,
    UltrasoundRegion,
    calibration_for_frame,
    regions_from_sequence,
)
from pipeline.errors import (
    MalformedElementError,
    MskusInputError,
    NoPixelDataError,
    NotDicomError,
    NotUltrasoundError,
    TruncatedFileError,
    UndecodablePixelDataError,
)
from pipeline.measurements.vascularity import DopplerHeader
from pipeline.photometric import check_photometric, to_display_frame
from pipeline.tissue_area import estimate_tissue_box

__all__ = [
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "ULTRASOUND_SOP_CLASSES",
    "UltrasoundFrame",
    "UltrasoundImage",
    "check_elements",
    "load_ultrasound",
    "read_dataset",
    "validate_dataset",
]

logger = logging.getLogger(__name__)

#: Ultrasound image storage SOP classes (current and retired).
ULTRASOUND_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (Retired)
    }
)
#: Secondary Capture classes, accepted when Modality is US.
SECONDARY_CAPTURE_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)
_PIXEL_KEYWORDS = ("PixelData",)
_OTHER_PIXEL_KEYWORDS = ("FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class UltrasoundFrame:
    """One frame, ready to measure.

    Attributes
    ----------
    index : int
        0-based frame index (``frame_number`` is the 1-based DICOM number).
    gray : ndarray of uint8, shape (rows, columns)
        The displayed B-mode image as 8-bit gray (luma for colour data).
    color : ndarray of uint8, shape (rows, columns, 3), or None
        The displayed RGB image for colour data (Doppler), else ``None``.
    calibration : FrameCalibration
        mm per pixel, tissue box and regions of this frame.
    sop_instance_uid : str
        The source instance.
    number_of_frames : int
        Frames in the source instance.
    doppler : DopplerHeader
        The image's colour-flow attributes (Ultrasound Color Data Present,
        Pulse Repetition Frequency, lossy chroma).
    """

    index: int
    gray: np.ndarray = field(repr=False)
    color: np.ndarray | None = field(repr=False)
    calibration: FrameCalibration
    sop_instance_uid: str
    number_of_frames: int
    doppler: DopplerHeader = field(default_factory=DopplerHeader)

    @property
    def frame_number(self) -> int:
        """1-based DICOM frame number."""
        return self.index + 1

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.gray.shape[0]), int(self.gray.shape[1]))


def _open_failure_reason(exc: BaseException) -> MskusInputError:
    if isinstance(exc, InvalidDicomError):
        return NotDicomError("file is not DICOM (no DICM preamble)")
    if isinstance(exc, (EOFError, struct.error)):
        return TruncatedFileError(f"file is truncated: {exc}")
    return NotDicomError(f"file is not readable DICOM: {type(exc).__name__}: {exc}")


def read_dataset(source: str | os.PathLike[str] | BinaryIO) -> Dataset:
    """Read a DICOM file once, pixel data included, with typed errors.

    Raises
    ------
    NotDicomError, TruncatedFileError
        The file is not DICOM, or ends before its declared content.
    OSError
        The file cannot be opened (missing, permission); left to the caller.
    """
    _check_not_empty(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(source)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # pydicom raises many types on malformed input
            raise _open_failure_reason(exc) from None
    for warning in caught:
        text = str(warning.message)
        if "End of file reached" in text:
            raise TruncatedFileError(f"file is truncated: {text}")
    _check_last_element_complete(ds)
    if len(ds) == 0:
        if getattr(ds, "preamble", None) is not None:
            raise TruncatedFileError("file is truncated: it ends within the file meta information")
        raise NotDicomError("file is not DICOM (empty dataset)")
    return ds


def _check_not_empty(source: str | os.PathLike[str] | BinaryIO) -> None:
    """A zero-byte file is refused as empty, not as "no DICM preamble".

    pydicom reports both alike; a person looking for a failed copy or an
    interrupted export needs to know the file has no content at all.
    """
    try:
        if isinstance(source, (str, os.PathLike)):
            size = os.path.getsize(source)
        else:
            size = os.fstat(source.fileno()).st_size - source.tell()
    except (OSError, AttributeError, ValueError):
        return  # missing, unreadable or in memory: dcmread reports what it finds
    if size == 0:
        raise NotDicomError("file is empty (0 bytes)")


def _check_last_element_complete(ds: Dataset) -> None:
    """pydicom stops silently at end of file: a short last value means truncation."""
    if not ds._dict:
        return
    last = ds._dict[max(ds._dict)]
    if isinstance(last, RawDataElement) and last.value is not None and last.length != 0xFFFFFFFF:
        if len(last.value) < last.length:
            raise TruncatedFileError(
                f"file is truncated: element {last.tag} has {len(last.value)} of {last.length} bytes"
            )


def _check_is_ultrasound(ds: Dataset) -> None:
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in ULTRASOUND_SOP_CLASSES:
        return
    if modality == "US":
        return
    shown = modality or "missing"
    if sop_class:
        name = UID(sop_class).name
        raise NotUltrasoundError(f"not an ultrasound image (Modality {shown}, {name})")
    raise NotUltrasoundError(f"not an ultrasound image (Modality {shown})")


def _check_pixel_data(ds: Dataset) -> None:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if any(k in ds for k in _OTHER_PIXEL_KEYWORDS):
            raise NoPixelDataError("no integer Pixel Data (float pixel data is not ultrasound B-mode)")
        raise NoPixelDataError("no pixel data (7FE0,0010) in the dataset")
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if keyword not in ds or not ds[keyword].value:
            raise NoPixelDataError(f"pixel data without {keyword}")


def _number_of_frames(ds: Dataset) -> int:
    try:
        value = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        value = 1
    return max(1, value)


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        # A dataset built in memory: pydicom's own encoding flags say how it is stored.
        return UID(pydicom.uid.ExplicitVRLittleEndian)
    return UID(ts)


def _check_native_length(ds: Dataset, frames: int) -> None:
    """Truncated native pixel data is a truncated file, not a decoder problem."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    expected = rows * columns * samples * frames
    if bits == 1:
        expected = (expected + 7) // 8
    else:
        expected *= bits // 8
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "YBR_FULL_422":  # native 4:2:2 stores 2 samples per pixel
        expected = expected * 2 // 3
    actual = len(ds.PixelData)
    if actual < expected:
        raise TruncatedFileError(
            f"file is truncated: pixel data has {actual} of {expected} bytes "
            f"({frames} frame(s) of {rows}x{columns})"
        )


def _find_regions_sequence(item: Dataset) -> Sequence[Dataset] | None:
    """Sequence of Ultrasound Regions in ``item`` or one level down (functional groups)."""
    if "SequenceOfUltrasoundRegions" in item:
        return item.SequenceOfUltrasoundRegions
    for element in item:
        if element.VR == "SQ":
            for sub in element.value:
                if "SequenceOfUltrasoundRegions" in sub:
                    return sub.SequenceOfUltrasoundRegions
    return None


class UltrasoundImage:
    """An ultrasound image instance whose frames are decoded on demand.

    Create it with :func:`load_ultrasound`. The dataset (header and the
    still-encoded pixel data) stays in memory; :meth:`iter_frames` decodes
    one frame at a time.
    """

    def __init__(self, dataset: Dataset, *, source: str | None = None) -> None:
        self.dataset = dataset
        self.source = source
        self.photometric = check_photometric(dataset)
        self.number_of_frames = _number_of_frames(dataset)
        self.rows = int(dataset.Rows)
        self.columns = int(dataset.Columns)
        self.transfer_syntax = _transfer_syntax(dataset)
        self._shared_regions = regions_from_sequence(dataset.get("SequenceOfUltrasoundRegions"))
        self._per_frame_regions = self._parse_per_frame_regions()
        self._doppler = DopplerHeader.from_dataset(dataset)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.get("SOPInstanceUID", ""))

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.get("SOPClassUID", ""))

    @property
    def study_instance_uid(self) -> str:
        return str(self.dataset.get("StudyInstanceUID", ""))

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.get("SeriesInstanceUID", ""))

    @property
    def has_per_frame_regions(self) -> bool:
        return self._per_frame_regions is not None

    def _parse_per_frame_regions(self) -> list[tuple[UltrasoundRegion, ...] | None] | None:
        per_frame = self.dataset.get("PerFrameFunctionalGroupsSequence")
        if not per_frame:
            return None
        parsed: list[tuple[UltrasoundRegion, ...] | None] = []
        found = False
        for item in per_frame:
            seq = _find_regions_sequence(item)
            if seq is not None:
                found = True
                parsed.append(regions_from_sequence(seq))
            else:
                parsed.append(None)
        return parsed if found else None

    def regions_for_frame(self, index: int) -> tuple[UltrasoundRegion, ...]:
        """The ultrasound regions that apply to frame ``index`` (0-based)."""
        if self._per_frame_regions is not None and index < len(self._per_frame_regions):
            own = self._per_frame_regions[index]
            if own is not None:
                return own
        return self._shared_regions

    def _frame_indices(self, indices: Iterable[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.number_of_frames))
        chosen = [int(i) for i in indices]
        for i in chosen:
            if not 0 <= i < self.number_of_frames:
                raise IndexError(f"frame index {i} outside 0..{self.number_of_frames - 1}")
        return chosen

    def iter_frames(self, indices: Iterable[int] | None = None) -> Iterator[UltrasoundFrame]:
        """Decode and yield frames one at a time.

        Parameters
        ----------
        indices : iterable of int, optional
            0-based frame indices; all frames by default.

        Raises
        ------
        UndecodablePixelDataError
            The pixel data cannot be decoded (no decoder, corrupt stream).
        """
        chosen = self._frame_indices(indices)
        # pydicom yields frames in file order whatever order the indices are in.
        ordered = sorted(chosen)
        decoded = iter_pixels(self.dataset, indices=ordered)
        for index in ordered:
            try:
                arr = next(decoded)
            except StopIteration:
                raise UndecodablePixelDataError(
                    f"pixel data holds fewer frames than Number of Frames ({self.number_of_frames})"
                ) from None
            except (MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise UndecodablePixelDataError(
                    f"cannot decode pixel data ({self.transfer_syntax.name}): {exc}"
                ) from None
            yield self._make_frame(index, arr)

    def frame(self, index: int) -> UltrasoundFrame:
        """Decode a single frame (0-based)."""
        return next(self.iter_frames([index]))

    def _make_frame(self, index: int, arr: np.ndarray) -> UltrasoundFrame:
        display = to_display_frame(arr, self.dataset, self.photometric)
        regions = self.regions_for_frame(index)
        estimated = None
        if not any(r.is_2d and r.is_tissue for r in regions):
            estimated = estimate_tissue_box(display.gray)
        calibration = calibration_for_frame(
            self.dataset, regions, self.rows, self.columns, estimated_tissue_box=estimated
        )
        return UltrasoundFrame(
            index=index,
            gray=display.gray,
            color=display.color,
            calibration=calibration,
            sop_instance_uid=self.sop_instance_uid,
            number_of_frames=self.number_of_frames,
            doppler=self._doppler,
        )

    def __repr__(self) -> str:
        return (
            f"UltrasoundImage(sop_instance_uid={self.sop_instance_uid!r}, frames={self.number_of_frames}, "
            f"{self.columns}x{self.rows}, {self.photometric}, {self.transfer_syntax.name})"
        )


def check_elements(ds: Dataset) -> None:
    """Decode every element (sequences included) now, so a malformed one is refused with its tag.

    pydicom converts element values lazily: an unknown VR
    (``NotImplementedError``) or a value length that is not a multiple of its
    VR's size (``BytesLengthException``) would otherwise surface deep inside
    the analysis, far from the file that caused it.

    Raises
    ------
    MalformedElementError
        Names the element and what is wrong with it, in one line.
    """
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]  # converts the raw element
            items = list(elem.value) if elem.VR == "SQ" else ()
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # pydicom raises many types on a malformed value
            raise MalformedElementError(f"malformed DICOM element {tag}: {type(exc).__name__}: {exc}") from None
        for item in items:
            check_elements(item)


#: Image Pixel module attributes the decoder and the converters read as one integer each.
_INTEGER_PIXEL_ATTRIBUTES = (
    "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PlanarConfiguration", "NumberOfFrames",
)


def _check_integer_attributes(ds: Dataset) -> None:
    """Each Image Pixel attribute present holds one integer (a wrong VR can make it text or a list)."""
    for keyword in _INTEGER_PIXEL_ATTRIBUTES:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        try:
            if isinstance(value, (list, tuple, MultiValue, bytes)) or int(value) != float(value):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise MalformedElementError(f"malformed DICOM element {keyword}: not one integer ({str(value)[:40]!r})") from None


def validate_dataset(ds: Dataset) -> None:
    """Header checks of :func:`load_ultrasound` without decoding any pixel.

    Cheap enough for a network thread: modality/SOP class, pixel data
    present, photometric interpretation supported, native pixel data long
    enough, transfer syntax decodable.

    Raises
    ------
    MalformedElementError, NotUltrasoundError, NoPixelDataError,
    UnsupportedPhotometricError, TruncatedFileError, UndecodablePixelDataError
    """
    check_elements(ds)
    _check_integer_attributes(ds)
    _check_is_ultrasound(ds)
    _check_pixel_data(ds)
    check_photometric(ds)
    frames = _number_of_frames(ds)
    ts = _transfer_syntax(ds)
    if not ts.is_transfer_syntax:
        raise UndecodablePixelDataError(f"unknown transfer syntax {ts}")
    if not ts.is_compressed:
        _check_native_length(ds, frames)
    else:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise UndecodablePixelDataError(f"unsupported transfer syntax {ts.name} ({ts})") from None
        if not decoder.is_available:
            raise UndecodablePixelDataError(f"no decoder installed for {ts.name}")


def load_ultrasound(source: str | os.PathLike[str] | BinaryIO | Dataset) -> UltrasoundImage:
    """Open an ultrasound DICOM file or dataset for measurement.

    Parameters
    ----------
    source : path, binary file-like or Dataset
        A DICOM Part 10 file, or a dataset already in memory (as received by
        the storage node). A file is read exactly once.

    Returns
    -------
    UltrasoundImage
        Header checked; frames decode lazily via
        :meth:`UltrasoundImage.iter_frames`.

    Raises
    ------
    NotDicomError, TruncatedFileError, NotUltrasoundError, NoPixelDataError,
    UnsupportedPhotometricError, UndecodablePixelDataError
        Each with a one-line reason.
    """
    name: str | None = None
    if isinstance(source, Dataset):
        ds = source
        name = str(getattr(source, "filename", "") or "") or None
    else:
        if isinstance(source, (str, os.PathLike)):
            name = str(Path(source))
        ds = read_dataset(source)
    validate_dataset(ds)
    image = UltrasoundImage(ds, source=name)
    logger.debug("loaded %r", image)
    return image
