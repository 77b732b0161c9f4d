"""What a PACS user sees of report versions: the superseding SR says so, findings keep their Tracking UIDs."""

from __future__ import annotations

import io

import pydicom

from tests.analysis_helpers import analyze_image
from pipeline.loading import load_ultrasound
from pipeline.sr.reader import read_measurement_report
from pipeline.sr.sop import SERIES_DESCRIPTION, build_measurement_report
from tests.conftest import SAMPLE_DATA


def _report(images, previous=None):
    doc = build_measurement_report([analyze_image(i) for i in images], [i.dataset for i in images], previous=previous)
    buffer = io.BytesIO()
    doc.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_superseding_reports_say_their_version_and_keep_tracking_uids():
    images = [load_ultrasound(SAMPLE_DATA / name) for name in ("04_muscle_mono.dcm",)]
    first = _report(images)
    second = _report(images, previous=first)
    third = _report(images, previous=[first, second])
    assert first.SeriesDescription == SERIES_DESCRIPTION
    assert second.SeriesDescription == "mskus measurements v2, supersedes v1 (automated)"
    assert third.SeriesDescription == "mskus measurements v3, supersedes v2 (automated)"
    assert all(len(ds.SeriesDescription) <= 64 for ds in (first, second, third))  # LO
    uids = [[(g.tracking_identifier, g.tracking_uid) for g in read_measurement_report(ds).groups]
            for ds in (first, second, third)]
    assert uids[0] and uids[0] == uids[1] == uids[2], "the same finding keeps its Tracking UID across versions"
    assert len({uid for _, uid in uids[0]}) == len(uids[0]), "unique within a report"
    assert first.SOPInstanceUID != second.SOPInstanceUID != third.SOPInstanceUID


def test_tracking_uids_differ_between_images_and_structures():
    a = _report([load_ultrasound(SAMPLE_DATA / "04_muscle_mono.dcm")])
    b = _report([load_ultrasound(SAMPLE_DATA / "05_muscle_bone.dcm")])
    ua = {g.tracking_uid for g in read_measurement_report(a).groups}
    ub = {g.tracking_uid for g in read_measurement_report(b).groups}
    assert ua and ub and not ua & ub
