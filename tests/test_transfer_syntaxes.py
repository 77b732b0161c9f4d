"""Every transfer syntax the node accepts decodes to the same 8-bit image.

The compressed files are made by the real DCMTK encoders (dcmcjpeg,
dcmcjpls, dcmcrle) and by pydicom's own encoders, then read back by our
loader and compared with the uncompressed original.
"""

from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from pipeline.loading import load_ultrasound
from tests.conftest import make_us_dataset, region_item, require_tool


@pytest.fixture
def original(tmp_path, speckle_image):
    """A small uncompressed ultrasound file (MONOCHROME2) and its pixels."""
    ds = make_us_dataset(speckle_image, regions=[region_item((20, 10, 139, 109))])
    path = tmp_path / "original.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, speckle_image


@pytest.fixture
def original_rgb(tmp_path, speckle_image):
    rgb = np.dstack([speckle_image, speckle_image // 2, 255 - speckle_image]).astype(np.uint8)
    ds = make_us_dataset(rgb, photometric="RGB", regions=[region_item((20, 10, 139, 109))])
    path = tmp_path / "original_rgb.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, rgb


@pytest.mark.parametrize(
    ("tool", "package", "options", "transfer_syntax", "max_error"),
    [
        ("dcmcjpeg", "dcmtk", ["+e1"], "1.2.840.10008.1.2.4.70", 0),  # JPEG Lossless SV1
        ("dcmcjpeg", "dcmtk", ["+el"], "1.2.840.10008.1.2.4.57", 0),  # JPEG Lossless
        ("dcmcjpeg", "dcmtk", ["+eb", "+q", "95"], "1.2.840.10008.1.2.4.50", 12),  # JPEG Baseline
        ("dcmcjpeg", "dcmtk", ["+ee", "+q", "95"], "1.2.840.10008.1.2.4.51", 12),  # JPEG Extended
        ("dcmcjpls", "dcmtk", [], "1.2.840.10008.1.2.4.80", 0),  # JPEG-LS Lossless
        ("dcmcjpls", "dcmtk", ["+en", "+md", "2"], "1.2.840.10008.1.2.4.81", -2),  # JPEG-LS near-lossless (max 2)
        ("dcmcrle", "dcmtk", [], "1.2.840.10008.1.2.5", 0),  # RLE
    ],
)
def test_dcmtk_encoded_grayscale_decodes(tmp_path, original, tool, package, options, transfer_syntax, max_error):
    executable = require_tool(tool, package)
    source, pixels = original
    target = tmp_path / f"{tool}.dcm"
    subprocess.run([executable, *options, str(source), str(target)], check=True, capture_output=True)
    assert str(pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID) == transfer_syntax
    frame = load_ultrasound(target).frame(0)
    error = np.abs(frame.gray.astype(int) - pixels.astype(int))
    if max_error <= 0:  # lossless (0) or near-lossless (-bound)
        assert error.max() <= -max_error
    else:  # lossy: a mean error well under the worst case
        assert error.mean() <= max_error / 4
    assert frame.calibration.mm_per_px == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("tool", "options", "lossless"),
    [("dcmcjpeg", ["+eb", "+q", "95"], False), ("dcmcjpls", [], True), ("dcmcrle", [], True)],
)
def test_dcmtk_encoded_colour_decodes_to_luma(tmp_path, original_rgb, tool, options, lossless):
    executable = require_tool(tool, "dcmtk")
    source, rgb = original_rgb
    target = tmp_path / f"{tool}_rgb.dcm"
    subprocess.run([executable, *options, str(source), str(target)], check=True, capture_output=True)
    frame = load_ultrasound(target).frame(0)
    luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(int)
    error = np.abs(frame.gray.astype(int) - luma)
    assert frame.color is not None
    if lossless:
        assert error.max() <= 1
    else:
        assert error.mean() < 4


@pytest.mark.parametrize("transfer_syntax", [JPEG2000Lossless, RLELossless])
def test_pydicom_encoded_decodes(tmp_path, original, transfer_syntax):
    source, pixels = original
    ds = pydicom.dcmread(source)
    ds.compress(transfer_syntax)
    target = tmp_path / "pydicom.dcm"
    ds.save_as(target, enforce_file_format=True)
    assert np.array_equal(load_ultrasound(target).frame(0).gray, pixels)


@pytest.mark.parametrize("transfer_syntax", [DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_other_native_syntaxes_decode(tmp_path, original, transfer_syntax):
    source, pixels = original
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    target = tmp_path / "native.dcm"
    ds.save_as(target, implicit_vr=transfer_syntax == ImplicitVRLittleEndian, little_endian=True)
    assert np.array_equal(load_ultrasound(target).frame(0).gray, pixels)


def test_long_cine_is_decoded_one_frame_at_a_time():
    """A 400-frame cine never holds more than a few decoded frames at once."""
    rng = np.random.default_rng(3)
    frames, rows, cols = 400, 120, 160
    cine = rng.integers(0, 255, size=(frames, rows, cols), dtype=np.uint8)
    ds = make_us_dataset(cine, regions=[region_item((0, 0, cols - 1, rows - 1))])
    raw_size = cine.nbytes
    del cine
    image = load_ultrasound(ds)
    tracemalloc.start()
    try:
        means = [float(frame.gray.mean()) for frame in image.iter_frames()]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(means) == frames
    # All frames as float64 would be 8x the raw size; as uint8, 1x. Allow ~10 frames.
    assert peak < 10 * rows * cols * 8, f"peak {peak} bytes for a {raw_size}-byte cine"
