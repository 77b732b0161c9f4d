"""The bundled synthetic studies: loadable, valid DICOM, ground truth consistent, reproducible."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from pipeline.calibration import CalibrationSource
from pipeline.loading import load_ultrasound
from tests.conftest import SAMPLE_DATA, require_tool

SAMPLE_FILES = sorted(SAMPLE_DATA.glob("*.dcm"))


def test_sample_set_has_every_variant():
    manifest = json.loads((SAMPLE_DATA / "manifest.json").read_text())
    files = manifest["files"] if isinstance(manifest, dict) else manifest
    assert len(SAMPLE_FILES) >= 10
    assert len(files) == len(SAMPLE_FILES)
    photometrics = {load_ultrasound(p).photometric for p in SAMPLE_FILES}
    assert {"MONOCHROME2", "RGB", "YBR_FULL_422"} <= photometrics
    assert any(load_ultrasound(p).number_of_frames > 1 for p in SAMPLE_FILES)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_file_matches_its_truth(path):
    truth = json.loads(path.with_suffix(".json").read_text())
    image = load_ultrasound(path)
    assert image.sop_instance_uid == truth["sop_instance_uid"]
    assert image.number_of_frames == len(truth["frames"])
    frame = image.frame(0)
    cal = frame.calibration
    if truth["mm_per_px"] is None:
        assert cal.source is CalibrationSource.UNCALIBRATED
    else:
        assert cal.is_calibrated and cal.mm_per_px == pytest.approx(truth["mm_per_px"], rel=1e-6)
    x0, y0, x1, y1 = truth["tissue_region_px"]
    bx = cal.tissue_box.as_tuple()
    tolerance = 0 if cal.source is CalibrationSource.ULTRASOUND_REGION else 3
    assert all(abs(a - b) <= tolerance for a, b in zip(bx, (x0, y0, x1, y1))), (bx, truth["tissue_region_px"])


def test_doppler_file_has_two_regions_and_colour():
    frame = load_ultrasound(SAMPLE_DATA / "09_nerve_doppler.dcm").frame(0)
    kinds = sorted(int(r.data_type) for r in frame.calibration.regions)
    assert kinds == [1, 2]
    assert frame.color is not None


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_file_passes_dciodvfy(path):
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_generator_is_deterministic(tmp_path):
    """Regenerating gives byte-identical DICOM files (same library versions)."""
    result = subprocess.run(
        [sys.executable, str(SAMPLE_DATA / "generate.py"), "--out", str(tmp_path), "--only", "01_nerve_mono", "04_muscle_mono"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ("01_nerve_mono.dcm", "04_muscle_mono.dcm"):
        fresh = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        shipped = hashlib.sha256((SAMPLE_DATA / name).read_bytes()).hexdigest()
        assert fresh == shipped, f"{name} differs from the shipped file: regenerate sample_data"
