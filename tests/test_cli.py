"""The mskus console command: help everywhere, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydicom.data import get_testdata_file

from tests.conftest import SHARED_DATA

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


def test_analyze_json_reports_calibration():
    path = SHARED_DATA / "real" / "calibrated-dicom" / "OBXXXX1A.dcm"
    result = run("analyze", "--json", str(path))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["mm_per_px"] == pytest.approx(0.26229, abs=1e-5)
