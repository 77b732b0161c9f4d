"""QA overlays as DICOM Secondary Capture "key images".

:func:`build_key_image` wraps a QA overlay (:func:`pipeline.overlay.draw_overlay`)
as a Secondary Capture Image Storage instance in the *same study* as its source
image and in its own series, with a burned-in banner "NOT FOR DIAGNOSIS —
automated measurement" and Burned In Annotation YES, so a PACS shows the
reviewer exactly which pixels the numbers came from, and nobody mistakes the
picture for an acquired image. The study runner's per-frame hook
(:class:`pipeline.study.outputs.FrameOutputWriter`, the node's archive) gives each study one key-image series per run.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

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
    "LossyHistory",
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


#: Transfer syntaxes that always discard information, with the Lossy Image Compression Method they imply.
_ALWAYS_LOSSY = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG Extended
    "1.2.840.10008.1.2.4.100": "ISO_13818_2",  # MPEG2 video
    "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10",  # MPEG-4 AVC / H.264
    "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10",
    "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10",
    "1.2.840.10008.1.2.4.107": "ISO_23008_2",  # HEVC / H.265
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}
#: Transfer syntaxes that may be lossy or not; the source's own Lossy Image Compression decides.
_MAYBE_LOSSY = {
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K
}


@dataclass(frozen=True)
class LossyHistory:
    """Whether a source's pixels went through lossy compression (PS3.3 C.7.6.1.1.5).

    A derived image inherits it: "01" once set is never reset, even when the
    derived pixels are stored uncompressed.

    Attributes
    ----------
    lossy : bool
        Lossy Image Compression "01" (else "00").
    ratios, methods : tuple of str
        Lossy Image Compression Ratio / Method values, oldest first (empty
        when not known).
    """

    lossy: bool
    ratios: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    @classmethod
    def of(cls, source: Dataset) -> LossyHistory:
        """The history of ``source``: its own attributes, else what its transfer syntax implies."""
        meta = getattr(source, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "") if meta is not None else "")
        declared = str(source.get("LossyImageCompression", "") or "").strip()
        ratios = tuple(str(v) for v in _values(source.get("LossyImageCompressionRatio")))
        methods = tuple(str(v) for v in _values(source.get("LossyImageCompressionMethod")))
        if declared == "01" or syntax in _ALWAYS_LOSSY or (syntax in _MAYBE_LOSSY and declared != "00"):
            implied = _ALWAYS_LOSSY.get(syntax) or _MAYBE_LOSSY.get(syntax)
            if not methods and implied:
                methods = (implied,)
            # Ratio and Method are paired value by value; an unpaired list would misattribute a ratio.
            if len(ratios) != len(methods):
                ratios = ()
            return cls(True, ratios, methods)
        return cls(False)

    def apply(self, ds: Dataset) -> None:
        """Set Lossy Image Compression (and Ratio/Method when known) on a derived image."""
        ds.LossyImageCompression = "01" if self.lossy else "00"
        if self.lossy and self.methods:
            ds.LossyImageCompressionMethod = list(self.methods) if len(self.methods) > 1 else self.methods[0]
            if self.ratios:
                ds.LossyImageCompressionRatio = list(self.ratios) if len(self.ratios) > 1 else self.ratios[0]


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


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
        key images of a study and run (the per-frame writers do); a new
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
    # A key image of a JPEG source carries the source's lossy history (PS3.3 C.7.6.1.1.5: "01" is never reset).
    LossyHistory.of(source).apply(ds)
    ds.PixelData = rgb.tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds
