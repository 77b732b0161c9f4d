"""The mskus console command: help everywhere, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from pydicom.data import get_testdata_file

from tests.conftest import SAMPLE_DATA, TEST_DATA

MSKUS = [sys.executable, "-m", "mskus"]


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
    path = TEST_DATA / "calibrated-dicom" / "OBXXXX1A.dcm"
    result = run("analyze", "--json", "--protocol", "nerve", str(path))
    rows = json.loads(result.stdout)
    assert rows and all(r["mm_per_px"] == pytest.approx(0.26229, abs=1e-5) for r in rows)
    assert rows[0]["calibration"] == "ultrasound_region"


def test_image_matching_no_protocol_is_reported_not_guessed():
    path = TEST_DATA / "calibrated-dicom" / "OBXXXX1A.dcm"
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
    overlays = sorted(out.glob("overlays/*/*.png"))
    assert len(overlays) == 9 + 10  # one per analysed frame (the cine has 10)
    # The batch layout (CONTRACT.md section 2): one SR per study, the tables beside them.
    assert {p.name for p in out.glob("*.csv")} >= {"measurements.csv", "errors.csv"}
    assert len(list(out.glob("SR_*.dcm"))) == 3


# --------------------------------------------------------------------------------------
# What a new user notices (issue 22)
# --------------------------------------------------------------------------------------


def test_inputs_are_named_by_the_folders_that_tell_them_apart(tmp_path):
    from pipeline.inputs import InputFile, walk_inputs

    a, b = tmp_path / "site_a" / "IM_0001.dcm", tmp_path / "site_b" / "IM_0001.dcm"
    for path in (a, b, tmp_path / "site_a" / "IM_0002.dcm"):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")

    def names(paths):
        return [f.rel for f in walk_inputs(paths) if isinstance(f, InputFile)]

    assert names([a, b]) == ["site_a/IM_0001.dcm", "site_b/IM_0001.dcm"]
    assert names([a, tmp_path / "site_a" / "IM_0002.dcm"]) == ["IM_0001.dcm", "IM_0002.dcm"]
    assert names([tmp_path]) == ["site_a/IM_0001.dcm", "site_a/IM_0002.dcm", "site_b/IM_0001.dcm"]


def test_same_file_name_in_two_folders_keeps_both_overlays_and_rows(tmp_path):
    for folder, sample in (("a", "01_nerve_mono.dcm"), ("b", "04_muscle_mono.dcm")):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(SAMPLE_DATA / sample, tmp_path / "in" / folder / "IM_0001.dcm")
    out = tmp_path / "out"
    result = run("analyze", str(tmp_path / "in"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    first_cells = {line.split()[0] for line in result.stdout.splitlines()[1:]}
    assert first_cells == {"a/IM_0001.dcm", "b/IM_0001.dcm"}
    nerve, muscle = sorted(out.glob("overlays/*/*_frame0001.png"))
    assert nerve.read_bytes() != muscle.read_bytes()
    from pipeline.sr import read_measurement_report

    tracking = {g.tracking_identifier for sr in out.glob("SR_*.dcm") for g in read_measurement_report(sr).groups}
    assert any(t.endswith("(a/IM_0001.dcm)") for t in tracking) and any(t.endswith("(b/IM_0001.dcm)") for t in tracking)


def _no_protocol_image(path):
    import numpy as np

    from tests.conftest import make_us_dataset

    ds = make_us_dataset(np.full((64, 64), 40, dtype=np.uint8))
    ds.SeriesDescription = "QA PHANTOM"
    ds.save_as(path, enforce_file_format=True)


def test_a_refusal_is_reported_once_and_says_what_to_do(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    _no_protocol_image(tmp_path / "phantom.dcm")
    result = run("analyze", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == ""  # the table is where refusals are reported, not a WARNING line as well
    empty = [line for line in result.stdout.splitlines() if line.startswith("empty.dcm")]
    assert len(empty) == 1 and empty[0].endswith("error: file is empty (0 bytes)")
    (phantom,) = [line for line in result.stdout.splitlines() if line.startswith("phantom.dcm")]
    assert "no protocol matched (looked at SeriesDescription='QA PHANTOM'" in phantom
    assert "--protocol nerve|muscle" in phantom
    verbose = run("-v", "analyze", str(tmp_path))  # -v still logs it, once, for whoever wants the log
    assert sum("file is empty" in line for line in verbose.stderr.splitlines()) == 1


def test_rerun_on_unchanged_inputs_keeps_the_report(tmp_path):
    import os

    import pydicom

    from pipeline.sr import read_measurement_report

    source = tmp_path / "in" / "IM_0001.dcm"
    source.parent.mkdir()
    shutil.copy(SAMPLE_DATA / "04_muscle_mono.dcm", source)
    out = tmp_path / "out"

    def report_uid() -> str:
        (report,) = out.glob("SR_*.dcm")
        return str(pydicom.dcmread(report, stop_before_pixels=True).SOPInstanceUID)

    assert run("analyze", str(source), "--out", str(out)).returncode == 0
    first = report_uid()
    assert run("analyze", str(source), "--out", str(out)).returncode == 0
    assert report_uid() == first  # nothing changed: no superseding report
    # Touched but not changed: its SHA-256 says it is the same input.
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert run("analyze", str(source), "--out", str(out)).returncode == 0
    assert report_uid() == first
    # Its content changed: a new report supersedes the old one.
    ds = pydicom.dcmread(source)
    ds.ImageComments = "re-exported"
    ds.save_as(source, enforce_file_format=True)
    assert run("analyze", str(source), "--out", str(out)).returncode == 0
    second = report_uid()
    assert second != first
    (report,) = out.glob("SR_*.dcm")
    assert read_measurement_report(report).predecessors == (first,)
    # A report deleted from the folder is written again.
    report.unlink()
    assert run("analyze", str(source), "--out", str(out)).returncode == 0
    assert report_uid() == second  # the same inputs and settings: the same report, written again
