"""Each class of bad input gets its own typed, one-line error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from pipeline.errors import (
    MskusInputError,
    NoPixelDataError,
    NotDicomError,
    NotUltrasoundError,
    TruncatedFileError,
    UndecodablePixelDataError,
    UnsupportedPhotometricError,
)
from pipeline.loading import load_ultrasound
from tests.conftest import make_us_dataset


def _load_all(source):
    image = load_ultrasound(source)
    return [f for f in image.iter_frames()]


def _assert_one_line(exc: MskusInputError) -> None:
    assert "\n" not in str(exc) and str(exc).strip()


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is a text file, not a DICOM image\n" * 20)
    with pytest.raises(NotDicomError, match="not DICOM") as info:
        load_ultrasound(path)
    _assert_one_line(info.value)


def test_empty_file_says_it_is_empty(tmp_path):
    path = tmp_path / "IM_0001.dcm"
    path.write_bytes(b"")
    with pytest.raises(NotDicomError) as info:
        load_ultrasound(path)
    assert str(info.value) == "file is empty (0 bytes)"
    with open(path, "rb") as handle:  # an open file (as the batch reader passes it) says the same
        with pytest.raises(NotDicomError, match=r"^file is empty \(0 bytes\)$"):
            load_ultrasound(handle)


@pytest.mark.parametrize("fraction", [0.004, 0.5, 0.99])
def test_truncated_file(tmp_path, fraction):
    data = open(get_testdata_file("OBXXXX1A.dcm", download=False), "rb").read()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(TruncatedFileError, match="truncated") as info:
        _load_all(path)
    _assert_one_line(info.value)


def test_truncated_encapsulated_pixel_data():
    data = open(get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm", download=False), "rb").read()
    with pytest.raises(TruncatedFileError, match="truncated"):
        _load_all(io.BytesIO(data[: len(data) - 500]))


def test_not_ultrasound_names_the_modality():
    with pytest.raises(NotUltrasoundError, match=r"not an ultrasound image \(Modality CT") as info:
        load_ultrasound(get_testdata_file("CT_small.dcm", download=False))
    _assert_one_line(info.value)


def test_secondary_capture_of_ultrasound_is_accepted(speckle_image):
    ds = make_us_dataset(speckle_image, sop_class="1.2.840.10008.5.1.4.1.1.7")
    assert _load_all(ds)[0].gray.shape == speckle_image.shape
    ds.Modality = "OT"
    with pytest.raises(NotUltrasoundError, match="Modality OT"):
        load_ultrasound(ds)


def test_no_pixel_data(speckle_image):
    ds = make_us_dataset(speckle_image)
    del ds.PixelData
    with pytest.raises(NoPixelDataError, match="no pixel data"):
        load_ultrasound(ds)


@pytest.mark.parametrize("photometric", ["HSV", "CMYK", "ARGB", ""])
def test_unsupported_photometric_interpretation(speckle_image, photometric):
    ds = make_us_dataset(speckle_image)
    ds.PhotometricInterpretation = photometric
    with pytest.raises(UnsupportedPhotometricError, match="unsupported Photometric Interpretation"):
        load_ultrasound(ds)


def test_photometric_that_contradicts_samples_per_pixel(speckle_image):
    ds = make_us_dataset(speckle_image)
    ds.PhotometricInterpretation = "RGB"
    with pytest.raises(UnsupportedPhotometricError, match="samples per pixel"):
        load_ultrasound(ds)


def test_undecodable_compressed_data(speckle_image):
    ds = make_us_dataset(np.dstack([speckle_image] * 3), photometric="RGB")
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8])  # SOI, then garbage
    ds["PixelData"].VR = "OB"
    with pytest.raises(UndecodablePixelDataError, match="cannot decode pixel data") as info:
        _load_all(ds)
    _assert_one_line(info.value)


def test_unknown_transfer_syntax_is_undecodable(speckle_image):
    ds = make_us_dataset(speckle_image)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"
    with pytest.raises(UndecodablePixelDataError):
        _load_all(ds)


def test_error_classes_are_distinct():
    classes = {NotDicomError, TruncatedFileError, NotUltrasoundError, NoPixelDataError,
               UnsupportedPhotometricError, UndecodablePixelDataError}
    assert len({c.code for c in classes}) == len(classes)
