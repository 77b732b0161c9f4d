"""QA overlays as DICOM Secondary Capture "key images".

:func:`build_key_image` wraps a QA overlay (:func:`pipeline.overlay.draw_overlay`)
as a Secondary Capture Image Storage instance in the *same study* as its source
image and in its own series, with a burned-in banner "NOT FOR DIAGNOSIS —
automated measurement" and Burned In Annotation YES, so a PACS shows the
reviewer exactly which pixels the numbers came from, and nobody mistakes the
picture for an acquired image. :class:`KeyImageWriter` gives each study one
key-image series per run and writes the files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline import __version__

__all__ = [
    "BANNER_TEXT",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "KeyImageWriter",
    "add_banner",
    "build_key_image",
]

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: The burned-in warning (the dash is drawn as a line: OpenCV fonts are ASCII only).
BANNER_TEXT = "NOT FOR DIAGNOSIS \u2014 automated measurement"
DEFAULT_SERIES_NUMBER = 901
SERIES_DESCRIPTION = "mskus QA overlays - NOT FOR DIAGNOSIS"
_BANNER_HEIGHT = 30
_PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def add_banner(image_bgr: np.ndarray, text: str = BANNER_TEXT) -> np.ndarray:
    """The image with a black band on top holding ``text`` in yellow.

    The band is added above the image (nothing of the overlay is covered).
    An em dash in ``text`` is drawn as a horizontal line.
    """
    image = np.asarray(image_bgr)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 image (rows, columns, 3), got {image.dtype} {image.shape}")
    band = np.zeros((_BANNER_HEIGHT, image.shape[1], 3), dtype=np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1
    colour = (0, 230, 255)
    x, baseline_y = 8, _BANNER_HEIGHT - 10
    parts = text.split("\u2014")
    for index, part in enumerate(parts):
        if index > 0:  # the em dash
            width = cv2.getTextSize("M", font, scale, thick)[0][0]
            y = baseline_y - cv2.getTextSize("x", font, scale, thick)[0][1] // 2
            cv2.line(band, (x + 2, y), (x + width + 2, y), colour, 2, cv2.LINE_AA)
            x += width + 4
        if part:
            cv2.putText(band, part, (x, baseline_y), font, scale, colour, thick, cv2.LINE_AA)
            x += cv2.getTextSize(part, font, scale, thick)[0][0]
    return np.ascontiguousarray(np.vstack([band, image]))


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def build_key_image(
    overlay_bgr: np.ndarray,
    source: Dataset,
    *,
    frame_number: int | None = None,
    series_instance_uid: str | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    instance_number: int = 1,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """A Secondary Capture instance of a QA overlay.

    Parameters
    ----------
    overlay_bgr : ndarray of uint8, (rows, columns, 3)
        The overlay as drawn by :func:`pipeline.overlay.draw_overlay` (BGR).
        The "NOT FOR DIAGNOSIS" banner is added here.
    source : Dataset
        The source image (header is enough): patient and study attributes
        are copied from it and it is referenced in Source Image Sequence.
    frame_number : int, optional
        1-based source frame, referenced for multi-frame sources.
    series_instance_uid : str, optional
        The key-image series (never the source's). Pass the same UID for all
        key images of a study and run (:class:`KeyImageWriter` does); a new
        series is made when not given.
    series_number, instance_number : int
        Numbers in that series.
    sop_instance_uid : str, optional
        Generated when not given.

    Raises
    ------
    ValueError
        Bad image, a source without study/SOP UIDs, or the source's own
        series given as the key-image series.
    """
    for keyword in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not source.get(keyword):
            raise ValueError(f"source image has no {keyword}")
    series_instance_uid = series_instance_uid or generate_uid()
    if str(series_instance_uid) == str(source.get("SeriesInstanceUID", "")):
        raise ValueError("a key image must be in its own series, not in the source image's series")
    pixels_bgr = add_banner(overlay_bgr)
    rgb = np.ascontiguousarray(pixels_bgr[..., ::-1])
    date, time = _now()

    ds = Dataset()
    charset = source.get("SpecificCharacterSet")
    if charset:
        ds.SpecificCharacterSet = charset
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.ContentDate, ds.ContentTime = date, time
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "mskus"
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SoftwareVersions = __version__
    ds.SecondaryCaptureDeviceManufacturer = "mskus"
    ds.SecondaryCaptureDeviceManufacturerModelName = "mskus"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    for keyword in _PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            ds[keyword] = pydicom.dataelem.DataElement(
                source[keyword].tag, source[keyword].VR, source[keyword].value
            )
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    laterality = str(source.get("ImageLaterality") or source.get("Laterality") or "").strip()
    ds.Laterality = laterality if laterality in ("R", "L") else None
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = None
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.ImageComments = "NOT FOR DIAGNOSIS - automated measurement (mskus QA overlay)"
    ds.DerivationDescription = f"mskus {__version__} QA overlay: measured contours, calipers and values drawn on the source frame"
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame_number is not None and ("NumberOfFrames" in source):
        ref.ReferencedFrameNumber = int(frame_number)
    ds.SourceImageSequence = DicomSequence([ref])

    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.PixelData = rgb.tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@dataclass
class KeyImageWriter:
    """Writes key images into a folder: one new series per study, numbered instances.

    Attributes
    ----------
    out_dir : Path
        Where the files go (``<stem>_frameNNNN_key.dcm``).
    series_number : int
        Series Number of every key-image series.
    """

    out_dir: Path
    series_number: int = DEFAULT_SERIES_NUMBER
    _series: dict[str, str] = field(default_factory=dict, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    written: list[Path] = field(default_factory=list)

    def series_uid(self, study_instance_uid: str) -> str:
        """The key-image series of a study (created on first use)."""
        if study_instance_uid not in self._series:
            self._series[study_instance_uid] = generate_uid()
        return self._series[study_instance_uid]

    def write(self, overlay_bgr: np.ndarray, source: Dataset, *, frame_number: int | None, stem: str) -> Path:
        """Build and save one key image; return its path."""
        study = str(source.StudyInstanceUID)
        number = self._counts.get(study, 0) + 1
        ds = build_key_image(
            overlay_bgr,
            source,
            frame_number=frame_number,
            series_instance_uid=self.series_uid(study),
            series_number=self.series_number,
            instance_number=number,
        )
        self._counts[study] = number
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = f"{stem}_frame{frame_number:04d}_key.dcm" if frame_number is not None else f"{stem}_key.dcm"
        path = out / name
        tmp = path.with_suffix(".dcm.tmp")
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
        self.written.append(path)
        return path
