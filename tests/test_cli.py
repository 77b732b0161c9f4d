"""The mskus console command: help everywhere, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydicom.data import get_testdata_file

from tests.conftest import SAMPLE_DATA, SHARED_DATA

MSKUS = [sys.executable, "-m", "pipeline"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MSKUS, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"]])
def test_help(args):
    result = run(*args)
    assert result.returncode == 0
    assert "usage: mskus" in result.stdout


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("mskus") or str(__import__("pathlib").Path(sys.executable).with_name("mskus"))
    result = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("mskus ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze"], "the following arguments are required"),
        (["analyze", "--no-such-flag", "x.dcm"], "unrecognized arguments"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_bad_file_gives_reason_and_nonzero_exit(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all" * 100)
    ct = get_testdata_file("CT_small.dcm", download=False)
    result = run("analyze", str(bad), ct)
    assert result.returncode == 1
    assert "file is not DICOM" in result.stdout
    assert "not an ultrasound image (Modality CT" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_folder_is_a_usage_error(tmp_path):
    result = run("analyze", str(tmp_path))
    assert result.returncode == 2
    assert "no DICOM files found" in result.stderr
    assert "Traceback" not in result.stderr


def test_analyze_json_reports_calibration_with_forced_protocol():
    path = SHARED_DATA / "real" / "calibrated-dicom" / "OBXXXX1A.dcm"
    result = run("analyze", "--json", "--protocol", "nerve", str(path))
    rows = json.loads(result.stdout)
    assert rows and all(r["mm_per_px"] == pytest.approx(0.26229, abs=1e-5) for r in rows)
    assert rows[0]["calibration"] == "ultrasound_region"


def test_image_matching_no_protocol_is_reported_not_guessed():
    path = SHARED_DATA / "real" / "calibrated-dicom" / "OBXXXX1A.dcm"
    result = run("analyze", "--json", str(path))
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "error" and row["reason"].startswith("no protocol matched (looked at SeriesDescription=")


def test_analyze_sample_data_prints_a_table_with_every_structure(tmp_path):
    out = tmp_path / "out"
    result = run("analyze", str(SAMPLE_DATA), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["file", "frame", "protocol"]
    assert any("cross_sectional_area" in line and "mm2" in line for line in lines)
    assert any("thickness" in line and "bone" not in line for line in lines)
    assert any("refused: no ultrasound calibration" in line for line in lines)
    assert any("calibrated from Pixel Spacing" in line for line in lines)
    overlays = sorted(out.glob("*.png"))
    assert len(overlays) == 9 + 10  # one per analysed frame (the cine has 10)
