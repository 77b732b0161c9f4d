"""DICOM writing: ultrasound regions, patient / study / series / equipment modules, deterministic UIDs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from .doppler import doppler_palette, rgb_to_palette
from .echogenicity import frame_luma

ULTRASOUND_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
ULTRASOUND_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
_UID_NAMESPACE = "mskus-sample-data-v1"


def deterministic_uid(*parts: object) -> UID:
    """Return a reproducible ``2.25.`` UID derived from ``parts``.

    Parameters
    ----------
    *parts
        Anything with a stable ``str()``; the same parts always give the same UID.

    Returns
    -------
    pydicom.uid.UID
        A UID of the form ``2.25.<decimal>``.
    """
    # (pydicom's generate_uid(prefix=None) ignores entropy_srcs and is random, so the
    # 2.25 UUID-style integer is derived here from a SHA-256 of the parts)
    digest = hashlib.sha256("\x1f".join([_UID_NAMESPACE, *[str(p) for p in parts]]).encode("utf-8")).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of the Sequence of Ultrasound Regions (0018,6011).

    Location bounds are inclusive frame pixel indices; reference pixel coordinates
    are relative to ``(x0, y0)`` as the standard says; deltas are in the physical
    units (3 = cm) per pixel.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    delta_x: float
    delta_y: float
    ref_x0: int = 0
    ref_y0: int = 0
    ref_value_x: float = 0.0
    ref_value_y: float = 0.0
    spatial_format: int = 1
    data_type: int = 1
    flags: int = 2
    units_x: int = 3
    units_y: int = 3
    transducer_frequency_khz: int | None = None

    def to_dataset(self) -> Dataset:
        """Return the sequence item as a :class:`pydicom.dataset.Dataset`."""
        it = Dataset()
        it.RegionSpatialFormat = self.spatial_format
        it.RegionDataType = self.data_type
        it.RegionFlags = self.flags
        it.RegionLocationMinX0 = self.x0
        it.RegionLocationMinY0 = self.y0
        it.RegionLocationMaxX1 = self.x1
        it.RegionLocationMaxY1 = self.y1
        it.ReferencePixelX0 = self.ref_x0
        it.ReferencePixelY0 = self.ref_y0
        it.PhysicalUnitsXDirection = self.units_x
        it.PhysicalUnitsYDirection = self.units_y
        it.ReferencePixelPhysicalValueX = float(self.ref_value_x)
        it.ReferencePixelPhysicalValueY = float(self.ref_value_y)
        it.PhysicalDeltaX = float(self.delta_x)
        it.PhysicalDeltaY = float(self.delta_y)
        if self.transducer_frequency_khz is not None:
            it.TransducerFrequency = int(self.transducer_frequency_khz)
        return it


def tissue_region(
    x0: int, y0: int, width: int, height: int, mm_per_px: float, *, data_type: int = 1, flags: int = 3,
    transducer_frequency_khz: int | None = 12000,
) -> UltrasoundRegion:
    """B-mode region covering ``width x height`` pixels at ``(x0, y0)``.

    The reference pixel is the top centre of the region (lateral 0, depth 0 at the
    skin), as linear-array scanners write it.
    """
    return UltrasoundRegion(
        x0=x0, y0=y0, x1=x0 + width - 1, y1=y0 + height - 1, delta_x=mm_per_px / 10.0, delta_y=mm_per_px / 10.0,
        ref_x0=width // 2, ref_y0=0, spatial_format=1, data_type=data_type, flags=flags,
        transducer_frequency_khz=transducer_frequency_khz,
    )


@dataclass(frozen=True)
class PatientInfo:
    """Patient module attributes."""

    name: str
    patient_id: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudyInfo:
    """General Study module attributes."""

    uid: str
    date: str
    time: str
    description: str
    accession: str
    study_id: str
    referring_physician: str = ""


@dataclass(frozen=True)
class SeriesInfo:
    """General Series attributes plus the image-level laterality."""

    uid: str
    number: int
    description: str
    laterality: str
    body_part: str
    protocol_name: str = ""
    time: str = ""


@dataclass(frozen=True)
class EquipmentInfo:
    """General Equipment module attributes."""

    manufacturer: str = "MSKUS Synthetic"
    model: str = "SYN-L12"
    station: str = "MSKUS-SIM-01"
    serial: str = "SIM0001"
    software: str = "mskus-sample-data 1"
    institution: str = "MSKUS Synthetic Imaging Lab"


def write_ultrasound_dicom(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    sop_instance_uid: str,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    regions: Sequence[UltrasoundRegion] | None = None,
    pixel_spacing_mm: float | None = None,
    instance_number: int = 1,
    content_time: str | None = None,
    frame_time_ms: float | None = None,
    color_data_present: bool = False,
    image_type_value4: str = "0001",
    equipment: EquipmentInfo = EquipmentInfo(),
    jpeg_quality: int = 92,
    multiframe: bool | None = None,
    pulse_repetition_frequency_hz: int | None = None,
    palette: np.ndarray | None = None,
) -> Dataset:
    """Write an Ultrasound (Multi-frame) Image Storage file like a scanner export.

    Parameters
    ----------
    path
        Output file.
    frames
        One frame ``(rows, cols)`` / ``(rows, cols, 3)`` or a stack ``(n, rows, cols[, 3])``
        of ``uint8`` pixels.  Gray frames are replicated into 3 channels for RGB and
        YBR photometrics.
    patient, study, series, equipment
        Module attributes.
    sop_instance_uid
        SOP Instance UID (use :func:`deterministic_uid` for reproducible files).
    photometric
        ``MONOCHROME2``, ``RGB``, ``YBR_FULL`` (native: stored as Y, Cb, Cr; or JPEG Baseline
        without chroma subsampling), ``YBR_FULL_422`` (requires JPEG Baseline) or
        ``PALETTE COLOR`` (RGB frames mapped to the indices of ``palette``).
    transfer_syntax
        Explicit VR Little Endian, RLE Lossless or JPEG Baseline (8 bit).  JPEG is
        encoded with OpenCV (libjpeg-turbo; 4:2:2 chroma subsampling for YBR_FULL_422,
        none for YBR_FULL) and encapsulated.
    regions
        Items of the Sequence of Ultrasound Regions; ``None`` omits the sequence.
    pixel_spacing_mm
        Write Pixel Spacing (0028,0030) with this isotropic value.
    instance_number, content_time
        Instance Number and Content Time (defaults to the series time).
    frame_time_ms
        Frame Time for multi-frame files (Frame Increment Pointer points to it).
    color_data_present
        Ultrasound Color Data Present (0028,0014).
    image_type_value4
        Fourth value of Image Type (``0001`` 2-D, ``0011`` 2-D + colour flow).
    jpeg_quality
        JPEG quality (1-100).
    multiframe
        Force Ultrasound Multi-frame Image Storage; default: when more than one frame.
    pulse_repetition_frequency_hz
        Pulse Repetition Frequency (0018,6032) of the colour-flow acquisition.
    palette
        ``(256, 3)`` ``uint8`` lookup table for ``PALETTE COLOR`` (default :func:`doppler_palette`).

    Returns
    -------
    pydicom.dataset.Dataset
        The dataset as written.
    """
    arr = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if arr.dtype != np.uint8:
        raise ValueError("frames must be uint8")
    color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    lut: np.ndarray | None = None
    if photometric == "PALETTE COLOR":
        lut = doppler_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] != 3):
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arr = rgb_to_palette(arr, lut)
        if arr.ndim == 2:
            arr = arr[None]
    elif color:
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] != 3):
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim == 3:
            arr = arr[None]
    else:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            raise ValueError("RGB frames need photometric RGB or YBR_FULL_422")
        if arr.ndim == 2:
            arr = arr[None]
    n_frames = arr.shape[0]
    is_multi = n_frames > 1 if multiframe is None else bool(multiframe)
    sop_class = ULTRASOUND_MULTIFRAME_IMAGE_STORAGE if is_multi else ULTRASOUND_IMAGE_STORAGE
    ts = UID(transfer_syntax)
    if photometric == "YBR_FULL_422" and ts != JPEGBaseline8Bit:
        raise ValueError("YBR_FULL_422 is only written with JPEG Baseline")
    if ts == JPEGBaseline8Bit and photometric not in ("YBR_FULL_422", "YBR_FULL"):
        raise ValueError("JPEG Baseline files are written as YBR_FULL_422 or YBR_FULL")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = deterministic_uid("implementation-class")
    meta.ImplementationVersionName = "MSKUS_SYNTH_1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MUSCULOSKELETAL", image_type_value4]
    ctime = content_time or series.time or study.time
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = ctime
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = UID(sop_instance_uid)
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.AcquisitionDateTime = study.date + ctime
    ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = series.time or study.time
    ds.ContentTime = ctime
    ds.AccessionNumber = study.accession
    ds.Modality = "US"
    ds.Manufacturer = equipment.manufacturer
    ds.InstitutionName = equipment.institution
    ds.ReferringPhysicianName = study.referring_physician
    ds.StationName = equipment.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = equipment.model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.BodyPartExamined = series.body_part
    ds.DeviceSerialNumber = equipment.serial
    ds.SoftwareVersions = equipment.software
    if series.protocol_name:
        ds.ProtocolName = series.protocol_name
    if is_multi and frame_time_ms is not None:
        ds.FrameTime = f"{frame_time_ms:.3f}"
        ds.CineRate = int(round(1000.0 / frame_time_ms))
        ds.RecommendedDisplayFrameRate = int(round(1000.0 / frame_time_ms))
        ds.EffectiveDuration = f"{frame_time_ms * n_frames / 1000.0:.4f}"
        ds.PreferredPlaybackSequencing = 0
    if regions:
        ds.SequenceOfUltrasoundRegions = DicomSequence([r.to_dataset() for r in regions])
    ds.StudyInstanceUID = UID(study.uid)
    ds.SeriesInstanceUID = UID(series.uid)
    ds.StudyID = study.study_id
    ds.SeriesNumber = int(series.number)
    ds.InstanceNumber = int(instance_number)
    ds.PatientOrientation = ""
    # Image Laterality only: Laterality (0020,0060) is not allowed alongside it
    ds.ImageLaterality = series.laterality
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    if is_multi:
        ds.NumberOfFrames = n_frames
        if frame_time_ms is not None:
            ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
    ds.Rows = int(arr.shape[1])
    ds.Columns = int(arr.shape[2])
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = [f"{pixel_spacing_mm:.6g}", f"{pixel_spacing_mm:.6g}"]
    ds.UltrasoundColorDataPresent = 1 if color_data_present else 0
    if pulse_repetition_frequency_hz is not None:
        ds.PulseRepetitionFrequency = int(pulse_repetition_frequency_hz)
    if lut is not None:
        for name, channel in (("Red", 0), ("Green", 1), ("Blue", 2)):
            setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{name}PaletteColorLookupTableData", (lut[:, channel].astype("<u2") * 257).tobytes())
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES"

    raw = arr if is_multi else arr[0]
    if ts == JPEGBaseline8Bit:
        sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if photometric == "YBR_FULL" else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality),
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling,
                  cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
        blobs: list[bytes] = []
        for fr in arr:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(fr, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            blobs.append(buf.tobytes())
        ds.PixelData = encapsulate(blobs, has_bot=is_multi)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ratio = arr.nbytes / sum(len(b) for b in blobs)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ratio:.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.LossyImageCompression = "00"
        if photometric == "YBR_FULL":
            raw = convert_color_space(np.ascontiguousarray(raw), "RGB", "YBR_FULL")
        ds.PixelData = np.ascontiguousarray(raw).tobytes()
        ds["PixelData"].VR = "OB"
        if ts == RLELossless:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        elif ts != ExplicitVRLittleEndian:
            raise ValueError(f"unsupported transfer syntax {ts}")
    ds.file_meta.TransferSyntaxUID = ts
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def read_luma_frames(path: str | Path) -> np.ndarray:
    """Decode a file with pydicom and return its frames as luma, shape ``(n, rows, cols)``."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    if n == 1:
        arr = arr[None]
    if spp == 3:
        return np.stack([frame_luma(f) for f in arr])
    return arr.astype(np.float64)
