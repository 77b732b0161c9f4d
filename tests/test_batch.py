"""``mskus batch``: a generated cohort in, SRs and tables out; Dask; resume after SIGKILL; pseudonyms."""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pipeline.batch import BatchOptions, run_batch
from pipeline.batch.progress import BatchProgress
from pipeline.batch.pseudonym import Pseudonymizer
from pipeline.batch.tables import ERROR_COLUMNS, MEASUREMENT_COLUMNS, SUMMARY_COLUMNS, ErrorRow
from pipeline.errors import UsageError
from pipeline.inputs import InputFile, walk_inputs
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH
from pipeline.sr.reader import read_measurement_report
from tests.conftest import SAMPLE_DATA

MSKUS = [sys.executable, "-m", "mskus"]

#: CSV measurement name -> (SR concept (scheme, value), derivation (scheme, value) or None, the group's Finding
#: (scheme, value), or None for the Finding of the row's protocol: :data:`PROTOCOL_FINDING`).
SR_CONCEPTS = {
    "cross_sectional_area": (("SCT", "42798000"), None, None),
    "perimeter": (("SCT", "131191004"), None, None),
    "major_axis": (("SCT", "131187009"), None, None),
    "minor_axis": (("SCT", "131188004"), None, None),
    "flattening_ratio": (("99MSKUS", "FLATTENING"), None, None),
    "thickness": (("LN", "59089-3"), None, None),
    "thickness_mean_central_half": (("LN", "59089-3"), ("SCT", "373098007"), None),
    # Same concept as the muscle's thickness, in a group of its own whose Finding is Subcutaneous tissue.
    "subcutaneous_thickness": (("LN", "59089-3"), None, ("SCT", "71966008")),
    "echogenicity_mean": (("DCM", "110849"), ("SCT", "373098007"), None),
    "echogenicity_sd": (("DCM", "110849"), ("SCT", "386136009"), None),
    "echogenicity_median": (("DCM", "110849"), ("SCT", "373099004"), None),
}
PROTOCOL_FINDING = {"nerve": ("SCT", "84782009"), "muscle": ("SCT", "127954009")}
#: The per-group confidence NUM: the rows' ``confidence`` column, not a measurement row of its own.
SR_CONFIDENCE = ("99MSKUS", "CONFIDENCE")


# --------------------------------------------------------------------------------------
# A generated cohort: copies of sample_data with new UIDs, plus one bad file of each kind
# --------------------------------------------------------------------------------------


@dataclass
class Cohort:
    root: Path
    studies: set[str] = field(default_factory=set)
    good_files: int = 0
    frames: int = 0
    #: source_file -> (code, reason prefix) of every expected errors.csv row
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: a study with both sides of the median nerve
    bilateral_study: str = ""
    cine_study: str = ""


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["mskus-batch-test", *map(str, parts)])


def _templates() -> dict[str, pydicom.Dataset]:
    names = ["01_nerve_mono", "04_muscle_mono", "05_muscle_bone", "10_muscle_pixelspacing", "08_muscle_uncalibrated",
             "03_nerve_jpeg", "07_nerve_cine"]
    return {name: pydicom.dcmread(SAMPLE_DATA / f"{name}.dcm") for name in names}


def _write_copy(ds: pydicom.Dataset, path: Path, study: int, number: int, **changes: str) -> pydicom.Dataset:
    """Save ``ds`` as image ``number`` of study ``study`` (new patient, study, series and SOP UIDs)."""
    ds.PatientID = f"COHORT-{study:04d}"
    ds.PatientName = f"COHORT^PATIENT{study:04d}"
    ds.StudyInstanceUID = _uid("study", study)
    ds.SeriesInstanceUID = _uid("series", study, number)
    ds.SOPInstanceUID = _uid("sop", study, number)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def build_cohort(root: Path, n_studies: int = 44) -> Cohort:
    """~190 files in ~n_studies studies under site/patient folders, repeated file names, bad files."""
    templates = _templates()
    cohort = Cohort(root)
    cycle = ["01_nerve_mono", "04_muscle_mono", "05_muscle_bone", "10_muscle_pixelspacing"]
    for s in range(n_studies):
        folder = root / f"site_{'AB'[s % 2]}" / f"P{s:04d}" / "US"
        names = list(cycle)
        if s % 15 == 3:
            names[3] = "08_muscle_uncalibrated"
        if s % 11 == 5:
            names[2] = "03_nerve_jpeg"
        if s == 7:
            names[1] = "07_nerve_cine"
        for n, name in enumerate(names, start=1):
            written = _write_copy(copy.deepcopy(templates[name]), folder / f"IM_{n:04d}.dcm", s, n)
            cohort.studies.add(str(written.StudyInstanceUID))
            cohort.good_files += 1
            frames = int(written.get("NumberOfFrames", 1) or 1)
            cohort.frames += frames
            rel = (folder / f"IM_{n:04d}.dcm").relative_to(root).as_posix()
            if name == "08_muscle_uncalibrated":
                cohort.errors[rel] = ("uncalibrated", "no ultrasound calibration: Sequence of Ultrasound Regions missing")
            if name == "07_nerve_cine":
                cohort.cine_study = str(written.StudyInstanceUID)
    # Both sides of the median nerve in study 0.
    left = copy.deepcopy(templates["01_nerve_mono"])
    _write_copy(left, root / "site_A/P0000/US/IM_0005.dcm", 0, 5, ImageLaterality="L", SeriesDescription="L MEDIAN NERVE WRIST")
    cohort.bilateral_study = _uid("study", 0)
    cohort.good_files += 1
    cohort.frames += 1

    bad = root / "site_B" / "P0001" / "US"
    # Not DICOM: a text file, one without suffix, an empty file.
    (root / "notes.txt").write_text("cohort notes, not an image\n")
    (bad / "README").write_text("scanner export log\n")
    (bad / "empty.dcm").write_bytes(b"")
    for rel in ("notes.txt", "site_B/P0001/US/README"):
        cohort.errors[rel] = ("not_dicom", "file is not DICOM")
    cohort.errors["site_B/P0001/US/empty.dcm"] = ("not_dicom", "file is empty (0 bytes)")
    # Truncated in the pixel data (header still readable): two, in studies that have good images.
    for s, n in ((1, 9), (2, 9)):
        ds = copy.deepcopy(templates["04_muscle_mono"])
        path = root / f"site_{'AB'[s % 2]}" / f"P{s:04d}" / "US" / f"IM_{n:04d}.dcm"
        _write_copy(ds, path, s, n)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * 0.6)])
        cohort.errors[path.relative_to(root).as_posix()] = ("truncated", "file is truncated")
    # Not ultrasound.
    ct = root / "site_A" / "P0002" / "CT_small.dcm"
    ct.write_bytes(Path(get_testdata_file("CT_small.dcm", download=False)).read_bytes())
    cohort.errors["site_A/P0002/CT_small.dcm"] = ("not_ultrasound", "not an ultrasound image (Modality CT")
    # No pixel data.
    nopix = copy.deepcopy(templates["04_muscle_mono"])
    del nopix.PixelData
    _write_copy(nopix, root / "site_A/P0004/US/IM_0010.dcm", 4, 10)
    cohort.errors["site_A/P0004/US/IM_0010.dcm"] = ("no_pixel_data", "no pixel data (7FE0,0010) in the dataset")
    # No protocol matched.
    unknown = copy.deepcopy(templates["04_muscle_mono"])
    for keyword in ("ProtocolName", "StudyDescription", "BodyPartExamined", "ImageComments"):
        if keyword in unknown:
            delattr(unknown, keyword)
    _write_copy(unknown, root / "site_A/P0006/US/IM_0011.dcm", 6, 11, SeriesDescription="QA PHANTOM")
    cohort.errors["site_A/P0006/US/IM_0011.dcm"] = ("no_protocol", "no protocol matched")
    # A link back to a parent folder, and a link to itself.
    os.symlink("..", root / "site_A" / "P0008" / "back_up")
    os.symlink("self_loop", root / "site_B" / "self_loop")
    cohort.errors["site_A/P0008/back_up"] = ("symlink_loop", "symbolic link loop: points back to its parent folder")
    cohort.errors["site_B/self_loop"] = ("symlink_loop", "symbolic link loop: too many levels")
    return cohort


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return build_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("out-local")
    started = time.monotonic()
    result = subprocess.run(
        [*MSKUS, "batch", str(cohort.root), "--out", str(out), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, result, time.monotonic() - started


# --------------------------------------------------------------------------------------
# The main run
# --------------------------------------------------------------------------------------


def test_cohort_is_the_expected_size(cohort):
    files = [f for f in walk_inputs(cohort.root) if isinstance(f, InputFile)]
    assert 180 <= len(files) <= 230
    assert len(cohort.studies) == 44


def test_local_run_exits_zero_and_writes_one_sr_per_study(local_run, cohort):
    out, result, seconds = local_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    srs = sorted(out.glob("*.dcm"))
    assert len(srs) == len(cohort.studies)
    for path in srs:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.Modality == "SR"
        assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34")
    print(f"local run of {cohort.good_files} images / {cohort.frames} frames: {seconds:.1f} s")


def test_errors_csv_has_one_row_per_bad_file_with_its_reason(local_run, cohort):
    out, _, _ = local_run
    rows = read_csv(out / "errors.csv")
    assert tuple(rows[0].keys()) == ERROR_COLUMNS
    by_file = Counter(r["source_file"] for r in rows)
    assert set(by_file) == set(cohort.errors), sorted(set(by_file) ^ set(cohort.errors))
    assert all(n == 1 for n in by_file.values()), by_file
    for row in rows:
        code, reason = cohort.errors[row["source_file"]]
        assert row["code"] == code, row
        assert row["reason"].startswith(reason), row
        assert "\n" not in row["reason"]
        if code == "no_protocol":  # the refusal says how to choose one in this command
            assert row["reason"].endswith("choose one with --protocol nerve|muscle, or add a rule (--config RULES.yaml)")


def test_measurements_csv_equals_the_sr_contents(local_run, cohort):
    out, _, _ = local_run
    rows = read_csv(out / "measurements.csv")
    assert tuple(rows[0].keys()) == MEASUREMENT_COLUMNS
    Key = tuple[str, int, tuple, tuple | None, tuple]
    from_csv: dict[Key, float] = {}
    csv_rows: dict[Key, dict[str, str]] = {}
    for row in rows:
        if row["status"] == "measured" and row["measurement"] in SR_CONCEPTS:
            concept, derivation, finding = SR_CONCEPTS[row["measurement"]]
            key = (row["sop_instance_uid"], int(row["frame"]), concept, derivation,
                   finding or PROTOCOL_FINDING[row["protocol"]])
            assert key not in from_csv, f"duplicate row {key}"
            from_csv[key] = float(row["value"])
            csv_rows[key] = row
    from_sr: dict[Key, float] = {}
    confidences: dict[Key, float] = {}  # each SR value's key -> its group's confidence
    patients: dict[str, str] = {}
    groups_with_values = 0
    for path in out.glob("*.dcm"):
        report = read_measurement_report(path)
        patients[report.study_instance_uid] = report.patient_id
        for group in report.groups:
            if not group.images or not group.measurements:
                continue  # a study-level finding (TID 1501 without image): findings.csv, not measurements.csv
            (image,) = group.images
            frame = image.frame_numbers[0] if image.frame_numbers else 1
            assert group.finding is not None
            # The confidence is the rows' column, not a measurement: kept out of the comparison of values.
            confidence = [m for m in group.measurements if m.name.key == SR_CONFIDENCE]
            values = [m for m in group.measurements if m.name.key != SR_CONFIDENCE]
            assert len(confidence) == 1 and values, group.tracking_identifier
            groups_with_values += 1
            for measurement in values:
                assert measurement.value is not None
                derivation = measurement.derivation.key if measurement.derivation is not None else None
                key = (image.sop_instance_uid, frame, measurement.name.key, derivation, group.finding.key)
                assert key not in from_sr
                from_sr[key] = measurement.value
                confidences[key] = confidence[0].value
    assert from_csv.keys() == from_sr.keys()
    for key, value in from_csv.items():
        assert value == pytest.approx(from_sr[key], rel=1e-12, abs=1e-12), key
    # Each group's confidence is the confidence column of the rows of its values.
    assert groups_with_values > 0
    for key, row in csv_rows.items():
        assert float(row["confidence"]) == pytest.approx(confidences[key], rel=1e-9, abs=1e-12), key
    names = {key: row["measurement"] for key, row in csv_rows.items()}
    assert {"flattening_ratio", "thickness_mean_central_half", "subcutaneous_thickness"} <= set(names.values())
    assert {r["study_uid"] for r in rows} == cohort.studies
    assert all(patients[r["study_uid"]] == r["patient_id"] for r in rows)


def test_every_analysed_frame_has_an_overlay(local_run, cohort):
    out, _, _ = local_run
    rows = read_csv(out / "measurements.csv")
    frames = {(r["study_uid"], r["sop_instance_uid"], int(r["frame"])) for r in rows if r["frame"]}  # "": clip values
    assert len(frames) == cohort.frames
    overlays = {p.relative_to(out / "overlays") for p in (out / "overlays").rglob("*.png")}
    expected = {Path(study) / f"{sop}_frame{frame:04d}.png" for study, sop, frame in frames}
    assert overlays == expected


def test_uncalibrated_images_keep_their_echogenicity_rows(local_run, cohort):
    out, _, _ = local_run
    rows = read_csv(out / "measurements.csv")
    uncalibrated = [f for f, (code, _) in cohort.errors.items() if code == "uncalibrated"]
    assert uncalibrated
    for rel in uncalibrated:
        mine = {r["measurement"]: r for r in rows if r["source_file"] == rel}
        assert mine["echogenicity_mean"]["status"] == "measured"
        assert mine["thickness"]["status"] == "refused" and mine["thickness"]["value"] == ""
        assert "no ultrasound calibration" in mine["thickness"]["reason"]


def test_partial_studies_are_marked_partial(local_run, cohort):
    out, _, _ = local_run
    truncated_study = _uid("study", 1)
    report = read_measurement_report(out / f"SR_{truncated_study}.dcm")
    assert report.completion_flag == "PARTIAL"
    assert any("file is truncated" in note.value for note in report.notes) or report.groups


def test_summary_has_repeated_frames_and_left_right_difference(local_run, cohort):
    out, _, _ = local_run
    rows = read_csv(out / "summary.csv")
    assert tuple(rows[0].keys()) == SUMMARY_COLUMNS
    cine = [r for r in rows if r["study_uid"] == cohort.cine_study and r["measurement"] == "cross_sectional_area"]
    # The 10-frame cine (forearm) counts once, the median of its frames; the single-frame image of the same
    # right median nerve is at the wrist: a row of its own, never pooled with the forearm.
    assert sorted((r["level"], int(r["images"]), int(r["frames"])) for r in cine) == [("forearm", 1, 10), ("wrist", 1, 1)]
    (forearm,) = [r for r in cine if r["level"] == "forearm"]
    frames = [float(r["value"]) for r in read_csv(out / "measurements.csv")
              if r["study_uid"] == cohort.cine_study and r["measurement"] == "cross_sectional_area" and "FOREARM" in r["series_description"]]
    assert len(frames) == 10 and float(forearm["median"]) == pytest.approx(float(np.median(frames)))
    both = [
        r
        for r in rows
        if r["study_uid"] == cohort.bilateral_study
        and r["structure"] == "median nerve"
        and r["measurement"] == "cross_sectional_area"
    ]
    assert sorted(r["laterality"] for r in both) == ["L", "R"]
    # Same pixels on both sides: the difference is exactly zero, on both rows.
    assert [r["right_minus_left"] for r in both] == ["0.0", "0.0"]


def test_rows_are_sorted_and_unique(local_run):
    out, _, _ = local_run
    rows = read_csv(out / "measurements.csv")
    keys = [(r["study_uid"], r["sop_instance_uid"], r["frame"], r["measurement"]) for r in rows]
    assert len(keys) == len(set(keys))
    studies = [r["study_uid"] for r in rows]
    assert studies == sorted(studies)


def test_rerun_skips_everything(local_run, cohort):
    out, _, _ = local_run
    before = (out / "measurements.csv").read_bytes()
    result = run_batch(BatchOptions(cohort.root, out, workers=2, progress_bar=False))
    assert result.studies_skipped == len(cohort.studies)
    assert result.studies_analysed == 0
    assert (out / "measurements.csv").read_bytes() == before


# --------------------------------------------------------------------------------------
# Dask and interruption: same bytes
# --------------------------------------------------------------------------------------


def test_dask_cluster_gives_identical_tables(local_run, cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    out, _, _ = local_run
    dask_out = tmp_path / "out-dask"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        result = run_batch(
            BatchOptions(cohort.root, dask_out, scheduler=cluster.scheduler_address, overlays=False, progress_bar=False)
        )
    assert "Dask" in result.executor
    assert result.studies_analysed == len(cohort.studies)
    for name in ("measurements.csv", "summary.csv", "errors.csv"):
        assert (dask_out / name).read_bytes() == (out / name).read_bytes(), name
    # The SR UIDs derive from the study, its inputs and the settings: the same on both.
    local_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in out.glob("*.dcm")}
    dask_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dask_out.glob("*.dcm")}
    assert local_uids == dask_uids


def test_sigkill_mid_run_then_rerun_gives_complete_tables(local_run, cohort, tmp_path):
    out, _, _ = local_run
    killed_out = tmp_path / "out-killed"
    records = killed_out / ".mskus-batch" / "studies"
    process = subprocess.Popen(
        [*MSKUS, "batch", str(cohort.root), "--out", str(killed_out), "--workers", "1", "--no-overlays", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if records.is_dir() and len(list(records.glob("*.json"))) >= 4:
                break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # coordinator and its workers
        process.wait(timeout=30)
    done_before = len(list(records.glob("*.json")))
    assert 4 <= done_before < len(cohort.studies), "the run was not interrupted mid-way"
    # What is there is consistent: complete CSVs of finished studies only, no temporary names.
    partial = read_csv(killed_out / "measurements.csv")
    assert len({r["study_uid"] for r in partial}) <= done_before

    result = run_batch(BatchOptions(cohort.root, killed_out, workers=2, overlays=False, progress_bar=False))
    assert result.studies_skipped >= done_before - 1
    assert result.studies_skipped + result.studies_analysed == len(cohort.studies)
    assert not list(killed_out.rglob("*.mskus-tmp"))
    for name in ("measurements.csv", "summary.csv", "errors.csv"):
        assert (killed_out / name).read_bytes() == (out / name).read_bytes(), name
    assert len(list(killed_out.glob("*.dcm"))) == len(cohort.studies)


def test_ctrl_c_stops_cleanly_and_keeps_finished_studies(tmp_path, monkeypatch):
    """KeyboardInterrupt (Ctrl-C, or SIGTERM via the CLI) after two studies: tables hold exactly those two."""
    import pipeline.batch.runner as runner
    from pipeline.batch.study import process_study

    root = tmp_path / "in"
    templates = _templates()
    for s in range(4):
        _write_copy(copy.deepcopy(templates["04_muscle_mono"]), root / f"S{s}" / "IM_1.dcm", 200 + s, 1)
    closed = []

    class InterruptedAfterTwo:
        description = "in-process"
        max_in_flight = 1

        def map_unordered(self, tasks):
            for i, task in enumerate(tasks):
                if i == 2:
                    raise KeyboardInterrupt
                yield task, process_study(task)

        def close(self, *, cancel=False):
            closed.append(cancel)

    monkeypatch.setattr(runner, "_make_executor", lambda options: InterruptedAfterTwo())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(BatchOptions(root, out, overlays=False, progress_bar=False))
    assert closed == [True]
    rows = read_csv(out / "measurements.csv")
    assert len({r["study_uid"] for r in rows}) == 2
    assert len(list(out.glob("*.dcm"))) == 2
    monkeypatch.undo()
    result = run_batch(BatchOptions(root, out, workers=1, overlays=False, progress_bar=False))
    assert (result.studies_skipped, result.studies_analysed) == (2, 2)
    assert len({r["study_uid"] for r in read_csv(out / "measurements.csv")}) == 4


# --------------------------------------------------------------------------------------
# Resume rules, on a small folder
# --------------------------------------------------------------------------------------


@pytest.fixture
def small_cohort(tmp_path) -> Path:
    root = tmp_path / "in"
    templates = _templates()
    for s in range(3):
        for n, name in enumerate(("01_nerve_mono", "04_muscle_mono"), start=1):
            _write_copy(copy.deepcopy(templates[name]), root / f"S{s}" / f"IM_{n}.dcm", 100 + s, n)
    return root


def test_changed_input_redoes_only_its_study_and_supersedes_the_sr(small_cohort, tmp_path):
    out = tmp_path / "out"
    first = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert first.studies_analysed == 3
    study = _uid("study", 101)
    old_sr = pydicom.dcmread(out / f"SR_{study}.dcm")
    rows_before = read_csv(out / "measurements.csv")

    # Touched but identical content: still done (hash compared).
    target = small_cohort / "S1" / "IM_1.dcm"
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert (again.studies_skipped, again.studies_analysed) == (3, 0)

    # Changed content: that study only, and its new SR lists the old one as predecessor.
    ds = pydicom.dcmread(target)
    ds.ImageComments = "re-exported"
    ds.save_as(target, enforce_file_format=True)
    changed = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert (changed.studies_skipped, changed.studies_analysed) == (2, 1)
    new_sr = pydicom.dcmread(out / f"SR_{study}.dcm")
    assert new_sr.SOPInstanceUID != old_sr.SOPInstanceUID
    predecessors = [
        item.ReferencedSOPInstanceUID
        for study_item in new_sr.PredecessorDocumentsSequence
        for series in study_item.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    ]
    assert predecessors == [old_sr.SOPInstanceUID]
    assert len(read_csv(out / "measurements.csv")) == len(rows_before)

    # --force: everything again; a removed study disappears from the outputs.
    forced = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, force=True, progress_bar=False))
    assert forced.studies_analysed == 3
    for path in (small_cohort / "S2").iterdir():
        path.unlink()
    shrunk = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert shrunk.studies == 2
    assert not (out / f"SR_{_uid('study', 102)}.dcm").exists()
    assert _uid("study", 102) not in {r["study_uid"] for r in read_csv(out / "measurements.csv")}


def test_overlays_are_made_when_an_earlier_run_had_none(small_cohort, tmp_path):
    out = tmp_path / "out"
    run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert not (out / "overlays").exists()
    result = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=True, progress_bar=False))
    assert result.studies_analysed == 3
    assert len(list((out / "overlays").rglob("*.png"))) == 6


def _nerve_algorithms(out: Path) -> set[str]:
    names = set()
    for path in out.glob("SR_*.dcm"):
        for group in read_measurement_report(path).groups:
            if group.algorithm is not None and "nerve" in group.algorithm.name:
                names.add(group.algorithm.name)
    return names


def test_batch_uses_the_configured_segmenter_and_redoes_studies_when_it_changes(small_cohort, tmp_path, monkeypatch):
    from pipeline.segmentation.factory import ENV_CONFIG, ENV_KIND, ENV_MODEL

    for name in (ENV_CONFIG, ENV_MODEL):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    monkeypatch.setenv(ENV_KIND, "classical")
    first = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert first.studies_analysed == 3
    assert _nerve_algorithms(out) == {"mskus-classical-nerve"}
    classical_rows = read_csv(out / "measurements.csv")

    # Same as `mskus analyze`: the configured kind (here via the environment) is what the workers use,
    # and a changed choice makes every study stale.
    monkeypatch.setenv(ENV_KIND, "learned")
    learned = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert (learned.studies_skipped, learned.studies_analysed) == (0, 3)
    assert _nerve_algorithms(out) == {"mskus-learned-nerve"}
    learned_rows = read_csv(out / "measurements.csv")
    area = lambda rows: sorted(r["value"] for r in rows if r["measurement"] == "cross_sectional_area")  # noqa: E731
    assert area(learned_rows) and area(learned_rows) != area(classical_rows)
    again = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert (again.studies_skipped, again.studies_analysed) == (3, 0)
    manifest = json.loads((out / ".mskus-batch" / "manifest.json").read_text())
    assert manifest["nerve_segmenter"]["kind"] == "learned"
    assert manifest["nerve_segmenter"]["model_sha256"] == hashlib.sha256(DEFAULT_MODEL_PATH.read_bytes()).hexdigest()

    # No model where the run is set up: every worker uses the classical fallback, and the SR says so.
    monkeypatch.setenv(ENV_MODEL, str(tmp_path / "missing.onnx"))
    fallback = run_batch(BatchOptions(small_cohort, out, workers=1, overlays=False, progress_bar=False))
    assert fallback.studies_analysed == 3
    assert _nerve_algorithms(out) == {"mskus-classical-nerve"}
    assert area(read_csv(out / "measurements.csv")) == area(classical_rows)
    sr = read_measurement_report(next(out.glob("SR_*.dcm")))
    parameters = [p for g in sr.groups if g.algorithm and "nerve" in g.algorithm.name for p in g.algorithm.parameters]
    assert any(p.startswith("fallback=learned segmenter unavailable (model file not found") for p in parameters)


def test_a_worker_with_another_model_refuses_the_study(small_cohort, tmp_path):
    from pipeline.batch.plan import FileRef, StudyTask
    from pipeline.batch.settings import RunSettings
    from pipeline.batch.study import VersionMismatchError, process_study
    from pipeline.segmentation import ModelMismatchError, SegmenterSpec
    from pipeline.settings import load_analysis_settings

    spec = SegmenterSpec("learned", "nerve_unet.onnx", "0" * 64, "{}")
    with pytest.raises(ModelMismatchError, match="the run was set up with 000000000000"):
        spec.build()
    with pytest.raises(ModelMismatchError, match="not usable here: model file not found"):
        SegmenterSpec("auto", str(tmp_path / "absent.onnx"), "0" * 64, "{}").build()
    analysis = dataclasses.replace(load_analysis_settings(), nerve=spec)
    settings = RunSettings(analysis=analysis, overlays=False)
    path = next(small_cohort.rglob("*.dcm"))
    st = path.stat()
    ref = FileRef(str(path), path.name, st.st_size, st.st_mtime_ns, "", 1)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VersionMismatchError, match="nerve_unet.onnx here has SHA-256"):
        process_study(StudyTask("1.2.3", (ref,), str(out), settings))
    assert not list(out.iterdir())  # nothing written


# --------------------------------------------------------------------------------------
# Pseudonymization
# --------------------------------------------------------------------------------------


def test_pseudonymize_replaces_patient_identity_in_csv_and_sr(small_cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MSKUS_PSEUDONYM_KEY", "correct horse battery staple")
    out = tmp_path / "out"
    result = subprocess.run(
        [*MSKUS, "batch", str(small_cohort), "--out", str(out), "--workers", "1", "--pseudonymize"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    pseudonymizer = Pseudonymizer(b"correct horse battery staple")
    expected_id = pseudonymizer.pseudonym("PatientID", "COHORT-0100")
    rows = [r for r in read_csv(out / "measurements.csv") if r["study_uid"] == _uid("study", 100)]
    assert rows and {r["patient_id"] for r in rows} == {expected_id}
    sr_path = out / f"SR_{_uid('study', 100)}.dcm"
    sr = pydicom.dcmread(sr_path)
    assert sr.PatientID == expected_id
    assert str(sr.PatientName) == pseudonymizer.pseudonym("PatientName", "COHORT^PATIENT0100")
    assert sr.PatientIdentityRemoved == "YES"
    assert "HMAC-SHA256" in sr.DeidentificationMethod
    assert not sr.get("PatientBirthDate")
    for path in [*out.glob("*.dcm"), *out.glob("*.csv")]:
        data = path.read_bytes()
        assert b"COHORT-01" not in data and b"PATIENT01" not in data, path


def test_pseudonymize_without_a_key_is_a_one_line_usage_error(small_cohort, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MSKUS_PSEUDONYM_KEY"}
    result = subprocess.run(
        [*MSKUS, "batch", str(small_cohort), "--out", str(tmp_path / "out"), "--pseudonymize"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "MSKUS_PSEUDONYM_KEY" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------
# Usage errors, discovery, progress
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batch", "/no/such/folder", "--out", "/tmp/x"], "no such folder"),
        (["batch", ".", "--out", "/tmp/x", "--workers", "0"], "must be at least 1"),
        (["batch", "."], "the following arguments are required: --out"),
        (["batch", ".", "--out", "/tmp/x", "--pseudonym-key", "12345678"], "only used with --pseudonymize"),
    ],
)
def test_usage_errors_are_one_line(args, message):
    result = subprocess.run([*MSKUS, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_scheduler_is_a_usage_error(small_cohort, tmp_path):
    pytest.importorskip("distributed")
    from pipeline.batch.executors import DaskExecutor

    with pytest.raises(UsageError, match="cannot connect to the Dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=2)


def test_second_run_on_the_same_out_dir_is_refused(small_cohort, tmp_path):
    from pipeline.batch.lock import output_lock

    out = tmp_path / "out"
    (out / ".mskus-batch").mkdir(parents=True)
    with output_lock(out / ".mskus-batch"):
        with pytest.raises(UsageError, match="another mskus batch run"):
            run_batch(BatchOptions(small_cohort, out, workers=1, progress_bar=False))


def test_walk_reports_unreadable_folders_and_goes_on(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.dcm").write_bytes(b"x")
    (tmp_path / "b" / "y.dcm").write_bytes(b"y")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "a":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr("pipeline.inputs.os.scandir", scandir)
    found = list(walk_inputs(tmp_path))
    assert [f.rel for f in found if isinstance(f, InputFile)] == ["b/y.dcm"]
    assert found[0] == ErrorRow("a", "unreadable_folder", "cannot read folder: Permission denied")


def test_walk_skips_hidden_files_output_folder_and_duplicate_links(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "one.dcm").write_bytes(b"1")
    (tmp_path / ".DS_Store").write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "measurements.csv").write_text("x")
    os.symlink("data", tmp_path / "zz_alias")
    found = list(walk_inputs(tmp_path, exclude=[tmp_path / "out"]))
    assert [f.rel for f in found if isinstance(f, InputFile)] == ["data/one.dcm"]
    assert [f.code for f in found if isinstance(f, ErrorRow)] == ["duplicate"]


def test_progress_logs_plain_lines_without_a_terminal(caplog):
    caplog.set_level("INFO", logger="pipeline.batch.progress")
    progress = BatchProgress(100, 4, bar=False, interval=0.0)
    progress.advance(frames=50, errors=1)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines and "50/100 frames" in lines[0] and "ETA" in lines[0]


def test_worker_reads_each_input_once_with_the_same_hash_pixels_and_reasons(tmp_path):
    """Hash and parse come from one memory map: same SHA-256, same frames, same refusal reasons as a plain read."""
    import numpy as np

    from pipeline.batch.reading import hash_and_read
    from pipeline.loading import UltrasoundImage, read_dataset

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    for path in sorted(sample.glob("*.dcm")):
        read = hash_and_read(str(path))
        assert read.error is None
        assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert read.stat.st_size == path.stat().st_size
        mapped = [f.gray for f in UltrasoundImage(read.dataset).iter_frames()]
        plain = [f.gray for f in UltrasoundImage(read_dataset(path)).iter_frames()]
        assert len(mapped) == len(plain) and all(np.array_equal(a, b) for a, b in zip(mapped, plain))
    cine = (sample / "07_nerve_cine.dcm").read_bytes()
    cases = {"empty.dcm": b"", "meta.dcm": cine[:200], "element.dcm": cine[:400], "pixels.dcm": cine[:5000]}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        read = hash_and_read(str(path))
        assert read.dataset is None and read.sha256 == hashlib.sha256(data).hexdigest()
        with pytest.raises(type(read.error)) as plain_error:
            read_dataset(path)
        assert str(read.error) == str(plain_error.value), name


def test_summary_never_pools_levels_or_compares_a_wrist_with_an_elbow():
    from pipeline.batch.summary import summary_rows
    from pipeline.batch.tables import MEASUREMENT_COLUMNS

    def row(sop: str, level: str, side: str, value: str) -> list[str]:
        cells = dict(study_uid="s", protocol="nerve", structure="median nerve", level=level, laterality=side,
                     measurement="cross_sectional_area", unit="mm2", value=value, status="measured", sop_instance_uid=sop)
        return [cells.get(name, "") for name in MEASUREMENT_COLUMNS]

    rows = summary_rows([row("a", "wrist", "R", "12.0"), row("a", "wrist", "R", "14.0"), row("b", "elbow", "L", "10.0"),
                         row("c", "wrist", "L", "9.0"), row("d", "forearm", "R", "8.0")])
    by = {(r[SUMMARY_COLUMNS.index("level")], r[SUMMARY_COLUMNS.index("laterality")]): r for r in rows}
    assert set(by) == {("wrist", "R"), ("wrist", "L"), ("elbow", "L"), ("forearm", "R")}
    difference = SUMMARY_COLUMNS.index("right_minus_left")
    assert by[("wrist", "R")][difference] == by[("wrist", "L")][difference] == "4.0"  # 13 (median of 12, 14) - 9
    assert by[("elbow", "L")][difference] == by[("forearm", "R")][difference] == ""
    wrist = by[("wrist", "R")]  # one image, two frames: counted once, its median
    assert (wrist[SUMMARY_COLUMNS.index("images")], wrist[SUMMARY_COLUMNS.index("frames")]) == ("1", "2")
    assert wrist[SUMMARY_COLUMNS.index("mean")] == "13.0"
