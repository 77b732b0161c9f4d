"""Real scanner files and pydicom's ultrasound test files decode and calibrate."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from pipeline.calibration import CalibrationSource
from pipeline.loading import load_ultrasound
from tests.conftest import TEST_DATA

CALIBRATED = TEST_DATA / "calibrated-dicom"


@pytest.mark.parametrize(
    ("name", "mm_per_px", "p0", "p1", "distance_mm", "tolerance"),
    [
        # Caliper centres and burned-in readings from tests/data/calibrated-dicom/SOURCE.md.
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 0.25478, (629, 319), (689, 435), 33.0, 0.5),
        ("OBXXXX1A.dcm", 0.26229, (459.5, 290.5), (498.4, 301.4), 10.6, 0.1),
    ],
)
def test_scanner_file_calibration_and_caliper_distance(name, mm_per_px, p0, p1, distance_mm, tolerance):
    image = load_ultrasound(CALIBRATED / name)
    frame = image.frame(0)
    cal = frame.calibration
    assert cal.source is CalibrationSource.ULTRASOUND_REGION
    assert cal.mm_per_px == pytest.approx(mm_per_px, abs=5e-5)
    assert cal.distance_mm(p0, p1) == pytest.approx(distance_mm, abs=tolerance)
    assert frame.gray.dtype == np.uint8 and frame.gray.shape == (image.rows, image.columns)


def test_palette_color_goes_through_its_lut():
    frame = load_ultrasound(CALIBRATED / "OBXXXX1A.dcm").frame(0)
    assert frame.color is not None and frame.color.shape == frame.gray.shape + (3,)
    # The B-mode part of the palette is gray: luma equals each channel there.
    gray_pixels = (frame.color[..., 0] == frame.color[..., 1]) & (frame.color[..., 1] == frame.color[..., 2])
    assert gray_pixels.mean() > 0.9
    assert np.abs(frame.gray[gray_pixels].astype(int) - frame.color[..., 0][gray_pixels]).max() <= 1
    # The ECG strip region (waveform, not 2D) is parsed but not the tissue region.
    assert len(frame.calibration.regions) == 2
    assert frame.calibration.tissue_region is not None and frame.calibration.tissue_region.is_2d


# Every ultrasound file that pydicom and pydicom-data ship (local copies, no network).
PYDICOM_US_FILES = [
    "ExplVR_BigEnd.dcm",
    "examples_jpeg2k.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "examples_ybr_color.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "OBXXXX1A.dcm",
    "OBXXXX1A_2frame.dcm",
    "OBXXXX1A_expb.dcm",
    "OBXXXX1A_expb_2frame.dcm",
    "OBXXXX1A_rle.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "US1_J2KI.dcm",
    "US1_J2KR.dcm",
    "US1_UNCI.dcm",
    "US1_UNCR.dcm",
    "color-pl.dcm",
    "color-px.dcm",
    "color3d_jpeg_baseline.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "gdcm-US-ALOKA-16_big.dcm",
]


@pytest.mark.parametrize("name", PYDICOM_US_FILES)
def test_pydicom_ultrasound_test_file_decodes(name):
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} missing: pydicom-data must be installed (make test installs it)"
    image = load_ultrasound(path)
    count = 0
    for frame in image.iter_frames():
        count += 1
        assert frame.gray.dtype == np.uint8
        assert frame.gray.shape == (image.rows, image.columns)
        assert frame.gray.std() > 1.0, "decoded frame is flat"
        if image.photometric.startswith(("RGB", "YBR", "PALETTE")):
            assert frame.color is not None and frame.color.dtype == np.uint8
        if frame.calibration.is_calibrated:
            assert 0.01 < frame.calibration.mm_per_px < 2.0
    assert count == image.number_of_frames


def test_jpeg2000_lossy_and_lossless_agree_with_uncompressed():
    """The same image stored raw, JPEG 2000 lossless and lossy decodes to (nearly) the same luma."""
    raw = load_ultrasound(get_testdata_file("US1_UNCR.dcm", download=False)).frame(0).gray.astype(int)
    lossless = load_ultrasound(get_testdata_file("US1_J2KR.dcm", download=False)).frame(0).gray.astype(int)
    lossy = load_ultrasound(get_testdata_file("US1_J2KI.dcm", download=False)).frame(0).gray.astype(int)
    assert np.abs(raw - lossless).max() <= 1
    assert np.abs(raw - lossy).mean() < 3


def test_sixteen_bit_palette_scaled_to_eight_bits():
    frame = load_ultrasound(get_testdata_file("gdcm-US-ALOKA-16.dcm", download=False)).frame(0)
    assert frame.gray.max() > 100  # scaled, not truncated to the low byte


def test_big_and_little_endian_decode_identically():
    little = load_ultrasound(get_testdata_file("OBXXXX1A.dcm", download=False)).frame(0)
    big = load_ultrasound(get_testdata_file("OBXXXX1A_expb.dcm", download=False)).frame(0)
    # pydicom reads the big-endian palette LUT words with one rounding step of difference.
    assert np.abs(little.gray.astype(int) - big.gray).max() <= 1
