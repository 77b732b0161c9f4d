"""One UID-to-file-name rule: a hostile UID cannot place any file outside the output or data folder."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pydicom
import pytest

from dicom_node.storage import DurableStore
from pipeline.batch.overlays import overlay_rel_path
from pipeline.filenames import uid_file_name
from pipeline.sr.sop import report_file_name
from tests.conftest import REPO, SAMPLE_DATA

HOSTILE = ["../../x", "/etc/passwd", "a/b", "..", "1.2.3\x00/../..", "1.2." + "9" * 70, "", "1.2\n/.."]


@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_uids_become_plain_names(uid):
    name = uid_file_name(uid)
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
    assert name.startswith("x") and len(name) == 41
    for path in (report_file_name(uid), overlay_rel_path(uid, uid, 1)):
        assert ".." not in path.split("/")


def test_valid_uids_keep_their_value():
    assert uid_file_name("1.2.840.10008.5.1") == "1.2.840.10008.5.1"
    assert uid_file_name("1.2.3\x00") == "1.2.3"  # NUL padding is not part of the UID


def _hostile_file(folder):
    ds = pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UIDs we want
        ds.StudyInstanceUID = "../../escaped-study"
        ds.SeriesInstanceUID = "../escaped-series"
        ds.SOPInstanceUID = "../../escaped-instance"
        ds.file_meta.MediaStorageSOPInstanceUID = "../../escaped-instance"
        folder.mkdir(parents=True)
        ds.save_as(folder / "hostile.dcm", enforce_file_format=False)


def _all_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_analyze_and_batch_keep_every_file_inside_the_output_folder(tmp_path):
    work = tmp_path / "a" / "b"  # "../../" from an output folder here stays inside tmp_path
    _hostile_file(work / "in")
    before = set(_all_files(tmp_path))
    mskus = [sys.executable, "-m", "mskus"]
    for args in (["analyze", "in/hostile.dcm", "--out", "out"], ["batch", "in", "--out", "bout", "--workers", "1"]):
        proc = subprocess.run([*mskus, *args], cwd=work, capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, 1), proc.stderr
    written = set(_all_files(tmp_path)) - before
    assert written, "nothing was written"
    outside = [p for p in written if not (p.is_relative_to(work / "out") or p.is_relative_to(work / "bout"))]
    assert not outside, outside
    assert any(p.name.startswith("SR_x") for p in written), "the report is named by the hashed UID"
    assert not any("escaped" in str(p) for p in written)


def test_node_storage_keeps_hostile_uids_inside_the_data_folder(tmp_path):
    store = DurableStore(tmp_path / "data")
    for uid in HOSTILE:
        inbox = store.store_instance(uid, uid, b"x")
        archive = store.store_result(uid, uid, b"y")
        for path in (inbox, archive):
            assert path.resolve().is_relative_to((tmp_path / "data").resolve()), path
    assert not any(p for p in tmp_path.iterdir() if p.name != "data")
    assert (REPO / "pipeline" / "filenames.py").is_file()
