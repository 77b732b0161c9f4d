"""Shared test helpers: paths, real-tool checks, small DICOM builders."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
# The full data sets live in the shared data folder beside the checkout, which a bare clone lacks: tests
# read the small copies in tests/data/ (tests/data/README.md); tests/test_test_data.py keeps them off the
# full sets (benchmarks/ and training/ read those).
TEST_DATA = REPO / "tests" / "data"
SAMPLE_DATA = REPO / "sample_data"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"


def require_tool(executable: str, package: str) -> str:
    """Path of a real peer tool; fail (never skip) naming the Debian package when missing."""
    found = shutil.which(executable) or (f"/usr/sbin/{executable}" if Path(f"/usr/sbin/{executable}").exists() else None)
    if not found:
        pytest.fail(f"{executable} not found: install the Debian package '{package}' (make test does this as root)")
    return found


def require_library(name: str, package: str, needed_by: str) -> None:
    """Fail (never skip) naming the Debian package when shared library ``lib<name>.so`` is missing."""
    from ctypes.util import find_library

    if sys.platform.startswith("linux") and find_library(name) is None:
        pytest.fail(f"lib{name} not found ({needed_by} needs it): install the Debian package '{package}' (make test does this as root)")


def region_item(
    box: Sequence[int],
    *,
    delta_cm: float = 0.01,
    data_type: int = 1,
    spatial_format: int = 1,
    units: int = 3,
) -> Dataset:
    """One Sequence of Ultrasound Regions item."""
    item = Dataset()
    item.RegionSpatialFormat = spatial_format
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = (
        int(v) for v in box
    )
    item.PhysicalUnitsXDirection = units
    item.PhysicalUnitsYDirection = units
    item.PhysicalDeltaX = delta_cm
    item.PhysicalDeltaY = delta_cm
    return item


def make_us_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    regions: Sequence[Dataset] | None = None,
    modality: str = "US",
    sop_class: str | None = None,
) -> Dataset:
    """A minimal, valid ultrasound dataset (Explicit VR Little Endian) around ``pixels``.

    ``pixels`` is (rows, cols), (rows, cols, 3), (frames, rows, cols) or (frames, rows, cols, 3).
    """
    color = photometric in ("RGB", "YBR_FULL")
    frames = pixels.shape[0] if pixels.ndim == (4 if color else 3) else 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class or (US_MULTIFRAME_STORAGE if frames > 1 else US_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "T1"
    ds.SeriesDescription = "R MEDIAN NERVE"
    shape = pixels.shape[1:] if frames > 1 else pixels.shape
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.SamplesPerPixel = 3 if color else 1
    if color:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063
    if regions is not None:
        ds.SequenceOfUltrasoundRegions = DicomSequence(list(regions))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


@pytest.fixture
def speckle_image() -> np.ndarray:
    """A 120x160 uint8 speckle-like image inside a black border."""
    rng = np.random.default_rng(7)
    img = np.zeros((120, 160), dtype=np.uint8)
    img[10:110, 20:140] = rng.rayleigh(40, size=(100, 120)).clip(0, 255).astype(np.uint8)
    return img
