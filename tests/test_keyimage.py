"""QA overlay key images: Secondary Capture in the source's study, own series, burned-in warning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest

from pipeline.keyimage import (
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    add_banner,
    build_key_image,
)
from pipeline.loading import load_ultrasound
from pipeline.overlay import draw_overlay
from pipeline.study.outputs import key_image_rel_path
from tests.analysis_helpers import analyze_image
from tests.conftest import SAMPLE_DATA, require_tool

MSKUS = [sys.executable, "-m", "mskus"]


def dciodvfy_errors(path) -> list[str]:
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def cine_overlay():
    image = load_ultrasound(SAMPLE_DATA / "07_nerve_cine.dcm")
    result = analyze_image(image, frames=[2])
    frame = image.frame(2)
    return image, draw_overlay(frame, result.frames[0])


def test_key_image_is_valid_secondary_capture(cine_overlay, tmp_path):
    image, overlay = cine_overlay
    source = image.dataset
    path = tmp_path / "07_nerve_cine_frame0003_key.dcm"
    build_key_image(overlay, source, frame_number=3).save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert ds.BurnedInAnnotation == "YES"
    assert ds.Modality == "OT"  # never mistaken for (or re-analysed as) an ultrasound image
    assert "NOT FOR DIAGNOSIS" in ds.ImageComments
    ref = ds.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert int(ref.ReferencedFrameNumber) == 3
    # The pixels: the overlay (RGB) below a banner band.
    pixels = ds.pixel_array
    assert pixels.shape[1:] == (overlay.shape[1], 3)
    band = pixels.shape[0] - overlay.shape[0]
    assert band > 0
    np.testing.assert_array_equal(pixels[band:], overlay[..., ::-1])
    assert (pixels[:band] > 0).any(), "banner text is burned in"


def test_key_image_refuses_source_series(cine_overlay):
    image, overlay = cine_overlay
    with pytest.raises(ValueError, match="own series"):
        build_key_image(overlay, image.dataset, series_instance_uid=image.dataset.SeriesInstanceUID)
    with pytest.raises(ValueError, match="BGR uint8"):
        add_banner(np.zeros((10, 10), dtype=np.uint8))


def test_analyze_writes_key_images(tmp_path):
    out = tmp_path / "out"
    files = [str(SAMPLE_DATA / "01_nerve_mono.dcm"), str(SAMPLE_DATA / "02_nerve_rgb.dcm"),
             str(SAMPLE_DATA / "04_muscle_mono.dcm")]
    proc = subprocess.run([*MSKUS, "analyze", *files, "--out", str(out), "--key-images"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    keys = [
        out / key_image_rel_path(str(src.StudyInstanceUID), str(src.SOPInstanceUID), 1) for src in sources
    ]  # key_images/<study>/<sop>_frame0001_key.dcm, beside overlays/<study>/...
    assert all(k.is_file() for k in keys) and len(list(out.glob("key_images/*/*_key.dcm"))) == 3
    datasets = [pydicom.dcmread(k) for k in keys]
    for ds, src in zip(datasets, sources):
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
    # 01 and 02 share study A: one key-image series for it, numbered; 04 (study B) has its own.
    assert datasets[0].SeriesInstanceUID == datasets[1].SeriesInstanceUID != datasets[2].SeriesInstanceUID
    assert sorted(int(ds.InstanceNumber) for ds in datasets[:2]) == [1, 2]
    for key in keys:
        assert dciodvfy_errors(key) == []
    assert len(list(out.glob("SR_*.dcm"))) == 2


def test_key_images_need_out():
    proc = subprocess.run([*MSKUS, "analyze", str(SAMPLE_DATA / "01_nerve_mono.dcm"), "--key-images"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "mskus: error: --key-images needs --out DIR"


def test_key_image_defaults_to_a_new_series(cine_overlay):
    image, overlay = cine_overlay
    ds = build_key_image(overlay, image.dataset, frame_number=1)
    assert ds.SeriesInstanceUID and ds.SeriesInstanceUID != image.dataset.SeriesInstanceUID
    assert ds.StudyInstanceUID == image.dataset.StudyInstanceUID


def test_key_image_of_a_jpeg_source_keeps_its_lossy_history(tmp_path):
    """PS3.3 C.7.6.1.1.5: once Lossy Image Compression is "01" it is never reset, even uncompressed."""
    jpeg = load_ultrasound(SAMPLE_DATA / "03_nerve_jpeg.dcm")
    frame = jpeg.frame(0)
    overlay = draw_overlay(frame, analyze_image(jpeg).frames[0])
    path = tmp_path / "03_nerve_jpeg_key.dcm"
    build_key_image(overlay, jpeg.dataset).save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian  # stored uncompressed ...
    assert ds.LossyImageCompression == "01"  # ... but its pixels went through JPEG once
    assert ds.LossyImageCompressionMethod == jpeg.dataset.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(ds.LossyImageCompressionRatio) == float(jpeg.dataset.LossyImageCompressionRatio)
    assert dciodvfy_errors(path) == []
    # A JPEG Baseline source that does not say so itself: its transfer syntax does.
    silent = pydicom.dcmread(SAMPLE_DATA / "03_nerve_jpeg.dcm", stop_before_pixels=True)
    for keyword in ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        delattr(silent, keyword)
    key = build_key_image(overlay, silent)
    assert key.LossyImageCompression == "01" and key.LossyImageCompressionMethod == "ISO_10918_1"
    assert "LossyImageCompressionRatio" not in key  # unknown: not invented
    # An uncompressed source stays "00".
    plain = pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm", stop_before_pixels=True)
    assert build_key_image(overlay, plain).LossyImageCompression == "00"
