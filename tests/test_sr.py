"""DICOM SR (TID 1500) output: validated by dciodvfy and dsrdump, round-tripped by two readers.

Every study of sample_data/ is analysed once (module fixture) and its report is
checked with the real tools (dicom3tools dciodvfy, DCMTK dsrdump), read back
with ``mskus sr show --json`` and with highdicom's ``srread``, and inspected
for what OHIF-style viewers need.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pipeline import __version__
from pipeline.analysis import ImageResult
from pipeline.loading import load_ultrasound
from pipeline.segmentation.factory import make_segmenter
from pipeline.sr import (
    ReportError,
    build_measurement_report,
    codes,
    group_by_study,
    header_dataset,
    read_measurement_report,
    report_file_name,
)
from pipeline.sr.content import subcutaneous_caliper
from pipeline.sr.items import to_scoord
from pipeline.sr.reader import NotStructuredReportError
from tests.analysis_helpers import analyze_image
from tests.conftest import SAMPLE_DATA, require_tool

MSKUS = [sys.executable, "-m", "mskus"]
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
#: dciodvfy warnings that are expected, with the reason (see the report / module docs):
#: private "99MSKUS" codes (anatomic sites with no verified SNOMED CT code, and the
#: TEXT concepts for reasons) are not in dciodvfy's list of coding schemes.
ALLOWED_WARNINGS = (
    re.compile(r"^Warning - Unrecognized defined term <99MSKUS> for value 1 of attribute <Coding Scheme Designator>$"),
)


@dataclass
class Study:
    uid: str
    path: Path
    results: list[ImageResult]
    headers: list[Dataset]


def _analyse(paths: list[Path]) -> tuple[list[ImageResult], dict[str, Dataset]]:
    results, headers = [], {}
    for path in paths:
        image = load_ultrasound(path)
        results.append(analyze_image(image))
        headers[image.sop_instance_uid] = header_dataset(image.dataset)
    return results, headers


def _save(results: list[ImageResult], headers: dict[str, Dataset], out: Path, **kwargs) -> tuple[Path, Dataset]:
    sources = [headers[r.sop_instance_uid] for r in results]
    doc = build_measurement_report(results, sources, **kwargs)
    path = out / f"{doc.SOPInstanceUID}.dcm"
    doc.save_as(path, enforce_file_format=True)
    return path, doc


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Study]:
    out = tmp_path_factory.mktemp("sr")
    results, headers = _analyse(sorted(SAMPLE_DATA.glob("*.dcm")))
    found = {}
    for uid, rs in group_by_study(results).items():
        path, _ = _save(rs, headers, out)
        found[uid] = Study(uid, path, rs, [headers[r.sop_instance_uid] for r in rs])
    assert len(found) == 3, "sample_data holds three studies"
    return found


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return [l for l in lines if l.startswith("Error")], [l for l in lines if l.startswith("Warning")]


def sr_show_json(path: Path) -> dict:
    proc = subprocess.run([*MSKUS, "sr", "show", "--json", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------------------
# What we expect in the document, from the analysis results
# --------------------------------------------------------------------------------------


def expected_groups(study: Study) -> list[dict]:
    """Per measured group, in document order: image, frames, graphic, points, measurements."""
    out = []
    for result in study.results:
        multiframe = result.number_of_frames > 1
        for frame in result.frames:
            frames = [frame.frame_number] if multiframe else []
            if frame.nerve is not None:
                n = frame.nerve
                values = []
                if n.cross_sectional_area_mm2 is not None:
                    values += [
                        ("Area", None, "mm2", n.cross_sectional_area_mm2),
                        ("Perimeter", None, "mm", n.perimeter_mm),
                        ("Major Axis", None, "mm", n.major_axis_mm),
                        ("Minor Axis", None, "mm", n.minor_axis_mm),
                        ("Flattening ratio", None, "1", n.flattening_ratio),
                    ]
                values += [
                    ("Echogenicity", "Mean", "1", n.echogenicity.mean),
                    ("Echogenicity", "Standard Deviation", "1", n.echogenicity.sd),
                    ("Confidence", None, "1", n.confidence),
                ]
                out.append(dict(sop=result.sop_instance_uid, frames=frames, graphic="POLYLINE",
                                points=to_scoord(n.contour_px, closed=True), values=values, finding="84782009"))
            elif frame.muscle is not None:
                m = frame.muscle
                thickness = []
                if m.thickness_mm is not None:
                    thickness = [("Thickness", None, "mm", m.thickness_mm),
                                 ("Thickness", "Mean", "mm", m.thickness_mean_central_half_mm),
                                 ("Confidence", None, "1", m.confidence)]
                out.append(dict(sop=result.sop_instance_uid, frames=frames, graphic="POLYLINE",
                                points=to_scoord(np.asarray(m.caliper_px), closed=False), values=thickness,
                                finding="127954009"))
                if m.subcutaneous_thickness_mm is not None:
                    out.append(dict(sop=result.sop_instance_uid, frames=frames, graphic="POLYLINE",
                                    points=to_scoord(subcutaneous_caliper(m), closed=False), finding="71966008",
                                    values=[("Thickness", None, "mm", m.subcutaneous_thickness_mm),
                                            ("Confidence", None, "1", m.confidence)]))
                e = m.echogenicity
                out.append(dict(sop=result.sop_instance_uid, frames=frames, graphic="POLYLINE",
                                points=to_scoord(m.roi_polygon_px, closed=True), finding="127954009",
                                values=[("Echogenicity", "Mean", "1", e.mean),
                                        ("Echogenicity", "Standard Deviation", "1", e.sd),
                                        ("Echogenicity", "Median", "1", e.median),
                                        ("Confidence", None, "1", m.confidence)]))
    return out


def test_sample_studies_are_complete_and_measured(studies):
    for study in studies.values():
        assert all(f.measured for r in study.results for f in r.frames), "sample data must all be measurable"
        report = read_measurement_report(study.path)
        assert report.completion_flag == "COMPLETE"
        assert report.verification_flag == "UNVERIFIED"
        assert not report.notes


# --------------------------------------------------------------------------------------
# Standard tools
# --------------------------------------------------------------------------------------


def test_every_report_passes_dciodvfy(studies):
    for study in studies.values():
        errors, warnings = dciodvfy(study.path)
        assert errors == [], f"{study.path.name}: {errors}"
        unexpected = [w for w in warnings if not any(p.match(w) for p in ALLOWED_WARNINGS)]
        assert unexpected == [], f"{study.path.name}: unexpected dciodvfy warnings {unexpected}"


def test_every_report_is_read_by_dsrdump(studies):
    exe = require_tool("dsrdump", "dcmtk")
    for study in studies.values():
        proc = subprocess.run([exe, str(study.path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Comprehensive 3D SR Document" in proc.stdout
        assert '"Imaging Measurement Report"' in proc.stdout
        assert "Completion Flag     : COMPLETE" in proc.stdout
        assert "Verification Flag   : UNVERIFIED" in proc.stdout
        assert "E:" not in proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------


def test_round_trip_through_mskus_sr_show_json(studies):
    for study in studies.values():
        data = sr_show_json(study.path)
        groups = [g for g in data["groups"] if g["regions"]]
        expected = expected_groups(study)
        assert len(groups) == len(expected)
        for got, want in zip(groups, expected):
            assert got["finding"]["value"] == want["finding"]
            (region,) = got["regions"]
            assert region["graphic_type"] == want["graphic"]
            assert region["image"]["sop_instance_uid"] == want["sop"]
            assert region["image"]["frame_numbers"] == want["frames"]
            points = np.asarray(region["points"], dtype=np.float32)
            np.testing.assert_array_equal(points, want["points"])  # exactly, at float32 (FL) precision
            values = [
                (m["name"]["meaning"], m["derivation"]["meaning"] if m["derivation"] else None, m["unit"]["value"],
                 m["value"])
                for m in got["measurements"]
            ]
            assert values == [(n, d, u, float(v)) for n, d, u, v in want["values"]]  # exact doubles


def test_round_trip_through_highdicom_srread(studies):
    for study in studies.values():
        sr = hd.sr.srread(study.path)
        assert isinstance(sr, hd.sr.Comprehensive3DSR)
        groups = sr.content.get_planar_roi_measurement_groups()
        expected = expected_groups(study)
        assert len(groups) == len(expected)
        uids = set()
        for group, want in zip(groups, expected):
            uids.add(str(group.tracking_uid))
            assert group.tracking_identifier
            assert group.finding_type.value == want["finding"]
            (site,) = group.finding_sites
            assert site.laterality is not None
            roi = group.roi
            assert roi.graphic_type.value == want["graphic"]
            np.testing.assert_array_equal(roi.value.astype(np.float32), want["points"])
            ref = roi.ContentSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == want["sop"]
            frames = ref.get("ReferencedFrameNumber")
            assert ([int(frames)] if frames is not None else []) == want["frames"]
            got = [
                (m.name.meaning, m.derivation.meaning if m.derivation else None, m.unit.value, m.value)
                for m in group.get_measurements()
            ]
            assert got == [(n, d, u, float(v)) for n, d, u, v in want["values"]]
        assert len(uids) == len(groups)


def test_built_document_content_and_evidence_match_the_file(studies):
    """The document as returned (before saving) has its whole tree and every source as evidence."""
    for study in studies.values():
        doc = build_measurement_report(study.results, study.headers)
        (root,) = doc.content
        assert len(root.ContentSequence) == len(doc.ContentSequence)
        groups = [i for i in _walk(root.ContentSequence) if i.ConceptNameCodeSequence[0].CodeValue == "125007"]
        assert len(groups) == len(expected_groups(study)) > 0
        evidence = {
            ref.ReferencedSOPInstanceUID: ref.ReferencedSOPClassUID
            for item in doc.CurrentRequestedProcedureEvidenceSequence
            for series in item.ReferencedSeriesSequence
            for ref in series.ReferencedSOPSequence
        }
        assert evidence == {str(h.SOPInstanceUID): str(h.SOPClassUID) for h in study.headers}
        assert "PertinentOtherEvidenceSequence" not in doc


# --------------------------------------------------------------------------------------
# Structure: what the contract and OHIF-style viewers need
# --------------------------------------------------------------------------------------


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def test_structure_for_viewers(studies):
    all_tracking_uids: list[str] = []
    for study in studies.values():
        ds = pydicom.dcmread(study.path)
        assert ds.SOPClassUID == COMPREHENSIVE_3D_SR
        assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"
        assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        items = list(_walk(ds.ContentSequence))
        names = [(i.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in i else "") for i in items]
        assert "111028" in names, "Image Library present"
        procedure = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
        assert procedure[0].ConceptCodeSequence[0].CodeValue == "16310003"
        # Image Library lists every source image.
        library = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028")
        listed = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in _walk(library.ContentSequence)
                  if i.ValueType == "IMAGE"}
        assert listed == {h.SOPInstanceUID for h in study.headers}
        # Graphic types OHIF draws, each SCOORD on an image of the library.
        for item in items:
            if item.ValueType == "SCOORD":
                assert item.GraphicType in ("POLYLINE", "ELLIPSE", "POINT")
                (image,) = item.ContentSequence
                assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in listed
            assert item.ValueType != "SCOORD3D"
        all_tracking_uids += [i.UID for i in items if i.ValueType == "UIDREF" and i.ConceptNameCodeSequence[0].CodeValue == "112040"]
        # Document attributes: patient/study copied, new series, device observer.
        first = study.headers[0]
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                        "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription"):
            assert ds.get(keyword) == first.get(keyword), keyword
        assert ds.Modality == "SR"
        assert ds.SeriesInstanceUID not in {h.SeriesInstanceUID for h in study.headers}
        assert ds.VerificationFlag == "UNVERIFIED"
        report = read_measurement_report(ds)
        assert report.device_observer_name == "mskus"
        assert report.device_observer_model == f"mskus {__version__}"
        assert report.device_observer_uid == codes.DEVICE_OBSERVER_UID
        for group in report.groups:
            assert group.algorithm is not None and group.algorithm.version
            assert all(site.laterality is not None for site in group.finding_sites)
        nerve_groups = [g for g in report.groups if g.finding and g.finding.value == "84782009"]
        for group in nerve_groups:
            params = set(group.algorithm.parameters)
            # The shipped default segmenter (configs/segmentation.yaml) names itself and its settings.
            default = make_segmenter()
            expected = {f"{k}={v:.10g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in default.parameters.as_dict().items()}
            assert expected <= params
            assert group.algorithm.name == default.name == "mskus-learned-nerve"
    assert len(all_tracking_uids) == len(set(all_tracking_uids)), "Tracking Unique Identifiers are unique"


def test_cine_groups_reference_frame_numbers(studies):
    cine = next(r for s in studies.values() for r in s.results if r.number_of_frames > 1)
    study = next(s for s in studies.values() if cine in s.results)
    report = read_measurement_report(study.path)
    frames = [g.regions[0].image.frame_numbers for g in report.groups
              if g.regions and g.regions[0].image.sop_instance_uid == cine.sop_instance_uid]
    assert frames == [(n,) for n in range(1, cine.number_of_frames + 1)]
    single = [g.regions[0].image.frame_numbers for g in report.groups
              if g.regions and g.regions[0].image.sop_instance_uid != cine.sop_instance_uid]
    assert single and all(f == () for f in single)


def test_uncalibrated_and_pixel_spacing_images(studies):
    reports = {s.uid: read_measurement_report(s.path) for s in studies.values()}
    groups = [g for r in reports.values() for g in r.groups]
    uncal = [g for g in groups if "08_muscle_uncalibrated" in (g.tracking_identifier or "")]
    assert len(uncal) == 2
    thickness, echo = uncal
    assert thickness.measurements == ()  # no mm value
    assert any("mm values not reported" in e.value and e.name.value == "NOT-MEASURED" for e in thickness.evaluations)
    assert [m.label for m in echo.measurements] == [
        "Echogenicity (Mean)", "Echogenicity (Standard Deviation)", "Echogenicity (Median)", "Confidence"]
    assert all(m.unit.value == "1" for m in echo.measurements)
    # No subcutaneous group without mm values (the thickness and echogenicity groups only, above).
    spacing = [g for g in groups if "10_muscle_pixelspacing" in (g.tracking_identifier or "")]
    assert spacing[0].measurements[0].unit.value == "mm"
    assert any(e.name.value == "CALIBRATION" and "Pixel Spacing" in e.value for e in spacing[0].evaluations)


# --------------------------------------------------------------------------------------
# PARTIAL reports
# --------------------------------------------------------------------------------------


def _variant(src: Path, out: Path, name: str, edit) -> Path:
    ds = copy.deepcopy(pydicom.dcmread(src))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    edit(ds)
    path = out / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _no_protocol(ds: Dataset) -> None:
    for keyword in ("SeriesDescription", "ProtocolName", "StudyDescription", "BodyPartExamined"):
        setattr(ds, keyword, "QA PHANTOM")


def _uncalibrated_without_nerve(ds: Dataset) -> None:
    del ds.SequenceOfUltrasoundRegions
    pixels = ds.pixel_array.copy()
    rng = np.random.default_rng(0)
    pixels[100:500, 100:700] = rng.rayleigh(40, (400, 600)).clip(0, 255).astype(np.uint8)
    ds.PixelData = pixels.tobytes()


@pytest.fixture(scope="module")
def partial_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("partial")
    paths = [
        SAMPLE_DATA / "02_nerve_rgb.dcm",
        _variant(SAMPLE_DATA / "01_nerve_mono.dcm", out, "phantom.dcm", _no_protocol),
        _variant(SAMPLE_DATA / "01_nerve_mono.dcm", out, "empty_nerve.dcm", _uncalibrated_without_nerve),
    ]
    results, headers = _analyse(paths)
    assert results[1].error_code == "no_protocol"
    assert results[2].frames and not results[2].frames[0].measured
    path, doc = _save(results, headers, out)
    return path, results


def test_partial_report_names_failed_images(partial_study):
    path, results = partial_study
    ds = pydicom.dcmread(path)
    assert ds.CompletionFlag == "PARTIAL"
    assert "2 image(s)" in ds.CompletionFlagDescription
    errors, _ = dciodvfy(path)
    assert errors == []
    report = read_measurement_report(path)
    notes = [n.value for n in report.notes if n.name.value == "FAILED-IMAGE"]
    assert len(notes) == 2
    assert any("phantom.dcm" in n and results[1].sop_instance_uid in n and "no protocol matched" in n for n in notes)
    assert any("empty_nerve.dcm" in n and "no nerve found" in n for n in notes)
    # Each unmeasured image appears as a group that references it and says why.
    not_measured = [g for g in report.groups if not g.regions]
    assert {g.source_images[0].sop_instance_uid for g in not_measured} == {
        results[1].sop_instance_uid, results[2].sop_instance_uid}
    for group in not_measured:
        assert group.tracking_uid and group.tracking_identifier
        assert any(e.name.value == "NOT-MEASURED" and e.value for e in group.evaluations)
    # The image that was measured is still there, and every image is in the library.
    assert len([g for g in report.groups if g.regions]) == 1
    assert {i.sop_instance_uid for i in report.image_library} == {r.sop_instance_uid for r in results}
    # highdicom reads the document too.
    sr = hd.sr.srread(path)
    assert len(sr.content.get_image_measurement_groups()) == 2


def test_dsrdump_reads_partial_report(partial_study):
    exe = require_tool("dsrdump", "dcmtk")
    proc = subprocess.run([exe, str(partial_study[0])], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Completion Flag     : PARTIAL" in proc.stdout
    assert "Qualitative Evaluations" in proc.stdout


# --------------------------------------------------------------------------------------
# Predecessors and argument checks
# --------------------------------------------------------------------------------------


def test_newer_report_lists_predecessor(studies, tmp_path):
    study = next(iter(studies.values()))
    first = pydicom.dcmread(study.path)
    doc = build_measurement_report(study.results, study.headers, previous=first)
    pre = doc.PredecessorDocumentsSequence[0]
    assert pre.StudyInstanceUID == study.uid
    assert pre.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    path = tmp_path / "second.dcm"
    doc.save_as(path, enforce_file_format=True)
    assert read_measurement_report(path).predecessors == (first.SOPInstanceUID,)
    errors, _ = dciodvfy(path)
    assert errors == []


def test_builder_refuses_bad_arguments(studies):
    a, b = list(studies.values())[:2]
    with pytest.raises(ReportError, match="at least one"):
        build_measurement_report([], [])
    with pytest.raises(ReportError, match="span 2 studies"):
        build_measurement_report(a.results + b.results, a.headers + b.headers)
    with pytest.raises(ReportError, match="no source dataset"):
        build_measurement_report(a.results, a.headers[1:])
    with pytest.raises(ReportError, match="without an analysis result"):
        build_measurement_report(a.results[1:], a.headers)
    with pytest.raises(ReportError, match="belongs to study"):
        build_measurement_report(a.results, a.headers + [b.headers[0]])
    with pytest.raises(ReportError, match="not a Structured Report"):
        build_measurement_report(a.results, a.headers, previous=[a.headers[0]])
    other_sr = pydicom.dcmread(b.path)
    with pytest.raises(ReportError, match="belongs to study"):
        build_measurement_report(a.results, a.headers, previous=other_sr)
    with pytest.raises(ReportError, match="no Study Instance UID"):
        build_measurement_report([ImageResult(source_file="x.dcm", error="file is not DICOM")], [])


# --------------------------------------------------------------------------------------
# Reader on other documents, and the CLI
# --------------------------------------------------------------------------------------


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(value_type: str, relationship: str, name: tuple[str, str, str], **attrs) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = [_code(*name)]
    for key, val in attrs.items():
        setattr(item, key, val)
    return item


def foreign_report() -> Dataset:
    """A TID 1500 document laid out as other tools do (legacy SRT codes, NUM-level SCOORD, DS values only)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientID = "OTHER-1"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    ds.ConceptNameCodeSequence = [_code("126000", "DCM", "Imaging Measurement Report")]
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "1500"
    ds.ContentTemplateSequence = [template]
    image = _item("IMAGE", "SELECTED FROM", ("111040", "DCM", "Original Source"))
    sop = Dataset()
    sop.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    sop.ReferencedSOPInstanceUID = "1.2.3.4"
    sop.ReferencedFrameNumber = 7
    image.ReferencedSOPSequence = [sop]
    scoord = _item("SCOORD", "INFERRED FROM", ("111030", "DCM", "Image Region"),
                   GraphicType="POLYLINE", GraphicData=[10.5, 20.5, 30.5, 40.5])
    scoord.ContentSequence = [image]
    value = Dataset()
    value.NumericValue = "12.25"
    value.MeasurementUnitsCodeSequence = [_code("mm", "UCUM", "mm")]
    length = _item("NUM", "CONTAINS", ("G-D7FE", "SRT", "Length"), MeasuredValueSequence=[value])
    length.ContentSequence = [scoord]
    site = _item("CODE", "HAS CONCEPT MOD", ("G-C0E3", "SRT", "Finding Site"),
                 ConceptCodeSequence=[_code("T-A0100", "SRT", "Brain")])
    lat = _item("CODE", "HAS CONCEPT MOD", ("G-C171", "SRT", "Laterality"),
                ConceptCodeSequence=[_code("G-A100", "SRT", "Right")])
    site.ContentSequence = [lat]
    tracking = _item("TEXT", "HAS OBS CONTEXT", ("112039", "DCM", "Tracking Identifier"), TextValue="Ruler 1")
    group = _item("CONTAINER", "CONTAINS", ("125007", "DCM", "Measurement Group"), ContinuityOfContent="SEPARATE")
    group.ContentSequence = [tracking, site, length]
    measurements = _item("CONTAINER", "CONTAINS", ("126010", "DCM", "Imaging Measurements"),
                         ContinuityOfContent="SEPARATE")
    measurements.ContentSequence = [group]
    ds.ContentSequence = [measurements]
    return ds


def test_reader_reads_other_layouts(tmp_path):
    ds = foreign_report()
    report = read_measurement_report(ds)
    assert report.is_tid1500
    (group,) = report.groups
    assert group.tracking_identifier == "Ruler 1"
    (m,) = group.measurements
    assert (m.name.meaning, m.value, m.unit.value) == ("Length", 12.25, "mm")
    (coords,) = m.coordinates
    assert coords.points == ((10.5, 20.5), (30.5, 40.5))
    assert coords.image.frame_numbers == (7,)
    assert group.finding_sites[0].laterality.meaning == "Right"
    assert group.finding_sites[0].site.meaning == "Brain"
    # and through the command line
    path = tmp_path / "other.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    proc = subprocess.run([*MSKUS, "sr", "show", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(". Ruler 1"))
    block = lines[start : start + 3]
    assert "Brain" in block[1] and "Right" in block[1] and "1.2.3.4" in block[1]
    assert block[2].split() == ["Length", "12.25", "mm"]


def test_sr_show_table_and_errors(studies, tmp_path):
    study = next(iter(studies.values()))
    proc = subprocess.run([*MSKUS, "sr", "show", str(study.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Imaging Measurement Report, TID 1500, completion COMPLETE" in proc.stdout
    assert "Echogenicity (Standard Deviation)" in proc.stdout
    image = SAMPLE_DATA / "01_nerve_mono.dcm"
    bad = subprocess.run([*MSKUS, "sr", "show", str(image)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "mskus: error: not a DICOM Structured Report (Modality US, no SR content tree)"
    with pytest.raises(NotStructuredReportError):
        read_measurement_report(image)
    usage = subprocess.run([*MSKUS, "sr"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1
    helped = subprocess.run([*MSKUS, "sr", "show", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--json" in helped.stdout


def test_analyze_out_writes_one_report_per_study(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([*MSKUS, "analyze", str(SAMPLE_DATA), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = sorted(out.glob("SR_*.dcm"))
    study_uids = {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in SAMPLE_DATA.glob("*.dcm")}
    assert [p.name for p in reports] == sorted(report_file_name(uid) for uid in study_uids)
    for path in reports:
        errors, _ = dciodvfy(path)
        assert errors == []
    # A second run on the same inputs keeps every report; with other settings each is superseded.
    first = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in reports}
    proc = subprocess.run([*MSKUS, "analyze", str(SAMPLE_DATA), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert {p.name: pydicom.dcmread(p).SOPInstanceUID for p in out.glob("SR_*.dcm")} == first
    proc = subprocess.run([*MSKUS, "analyze", str(SAMPLE_DATA), "--out", str(out), "--protocol", "muscle"],
                          capture_output=True, text=True, timeout=300)
    for path in sorted(out.glob("SR_*.dcm")):
        assert read_measurement_report(path).predecessors == (first[path.name],)


def test_text_the_source_charset_cannot_hold_switches_to_utf8(studies, tmp_path):
    study = next(iter(studies.values()))
    assert pydicom.dcmread(study.path).SpecificCharacterSet == study.headers[0].SpecificCharacterSet
    renamed = [dataclasses.replace(r, source_file=str(tmp_path / "nerv\u2014\u03b5.dcm")) if i == 0 else r
               for i, r in enumerate(study.results)]
    doc = build_measurement_report(renamed, study.headers)
    assert doc.SpecificCharacterSet == "ISO_IR 192"
    path = tmp_path / "utf8.dcm"
    doc.save_as(path, enforce_file_format=True)
    errors, _ = dciodvfy(path)
    assert errors == []
    report = read_measurement_report(path)
    assert "nerv\u2014\u03b5.dcm" in report.groups[0].tracking_identifier
    assert report.patient_name == str(study.headers[0].PatientName)


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (Retired)
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture with Modality US
    ],
)
def test_other_accepted_image_classes_and_comprehensive_sr(sop_class, tmp_path):
    def edit(ds: Dataset) -> None:
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class

    source = _variant(SAMPLE_DATA / "01_nerve_mono.dcm", tmp_path, "variant.dcm", edit)
    results, headers = _analyse([source])
    assert results[0].frames[0].measured
    path, doc = _save(results, headers, tmp_path, comprehensive_3d=False)
    assert doc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    errors, _ = dciodvfy(path)
    assert errors == []
    report = read_measurement_report(path)
    assert [i.sop_class_uid for i in report.image_library] == [sop_class]
    assert report.groups[0].regions[0].image.sop_class_uid == sop_class


def test_a_duplicated_image_is_reported_once(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(SAMPLE_DATA / "01_nerve_mono.dcm", source / "a.dcm")
    shutil.copy(SAMPLE_DATA / "01_nerve_mono.dcm", source / "copy.dcm")
    out = tmp_path / "out"
    proc = subprocess.run([*MSKUS, "analyze", str(source), "--out", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the copy is refused, with its reason
    rows = json.loads(proc.stdout)
    (duplicate,) = [r for r in rows if r["status"] == "error"]
    assert duplicate["source_file"] == "copy.dcm" and duplicate["reason"] == "same SOP Instance UID as a.dcm; analysed once"
    (path,) = out.glob("SR_*.dcm")
    assert len(read_measurement_report(path).image_library) == 1


def test_builder_refuses_source_series_and_uids(studies):
    study = next(iter(studies.values()))
    with pytest.raises(ReportError, match="new series"):
        build_measurement_report(study.results, study.headers, series_instance_uid=study.headers[0].SeriesInstanceUID)
    with pytest.raises(ReportError, match="SOP Instance UID of a source image"):
        build_measurement_report(study.results, study.headers, sop_instance_uid=study.headers[0].SOPInstanceUID)


# --------------------------------------------------------------------------------------
# What an SR reviewer notices (issue 22)
# --------------------------------------------------------------------------------------


def test_completion_flag_description_is_whole_words_within_64_characters(partial_study):
    from pipeline.sr.sop import fit_long_string

    path, _ = partial_study
    description = str(pydicom.dcmread(path, stop_before_pixels=True).CompletionFlagDescription)
    assert description == "2 image(s) not fully measured; see Qualitative Evaluations"
    long = "1234 image(s) of the study were not fully measured; see the Qualitative Evaluations below"
    fitted = fit_long_string(long)
    assert len(fitted) <= 64 and fitted.endswith("...")
    assert long.startswith(fitted[:-3]) and long[len(fitted) - 3] == " "  # cut between two words
    assert fit_long_string("short enough") == "short enough"


def test_sr_show_says_who_verified_and_when(studies, tmp_path):
    from pydicom.sequence import Sequence as DicomSequence

    study = next(iter(studies.values()))
    ds = pydicom.dcmread(study.path)
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = "Liddell^Alice"
    observer.VerifyingOrganization = "mskus test lab"
    observer.VerificationDateTime = "20240501140300"
    observer.VerifyingObserverIdentificationCodeSequence = DicomSequence([])
    ds.VerifyingObserverSequence = DicomSequence([observer])
    path = tmp_path / "verified.dcm"
    ds.save_as(path, enforce_file_format=True)
    proc = subprocess.run([*MSKUS, "sr", "show", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "verification VERIFIED" in proc.stdout
    assert "verified by Liddell, Alice (mskus test lab) on 2024-05-01 14:03:00" in proc.stdout.splitlines()
    (verifier,) = sr_show_json(path)["verifying_observers"]
    assert verifier == {"name": "Liddell^Alice", "organisation": "mskus test lab", "datetime": "20240501140300"}


def test_sr_show_fits_a_100_column_terminal_and_names_images_when_told(studies):
    from mskus.commands.sr import TERMINAL_WIDTH, format_table

    for study in studies.values():
        report = read_measurement_report(study.path)
        lines = format_table(report)
        assert max(len(line) for line in lines) <= TERMINAL_WIDTH
        assert sum(bool(re.match(r"\d+\. ", line)) for line in lines) == len(report.groups)  # a block per group
        names = {h.SOPInstanceUID: f"sample-{i}.dcm" for i, h in enumerate(study.headers)}
        named = "\n".join(format_table(report, image_names=names))
        assert all(f"image {name}" in named for name in names.values())
        assert not any(uid in named for uid in names)


def test_echogenicity_mean_sd_and_median_are_told_apart_everywhere(studies):
    """Standard encoding kept; every output of ours names the statistic.

    The SR keeps one concept (DCM 110849 Echogenicity) with a Derivation
    (DCM 121401) modifier per value, as highdicom's ``Measurement(derivation=...)``
    and dcmqi's ``quantity`` + ``derivationModifier`` encode statistics of one
    quantity. Viewers that drop the modifier show three "Echogenicity" values;
    the CSV names, ``mskus sr show`` and the QA page must not.
    """
    from mskus.commands.sr import format_table
    from pipeline.analysis import measurement_rows
    from qa_review.items import reviewable_report

    csv_name = {"Mean": "echogenicity_mean", "Standard Deviation": "echogenicity_sd", "Median": "echogenicity_median"}
    checked = 0
    for study in studies.values():
        # SR encoding: one Derivation per echogenicity value, never the same twice in a group (highdicom reads it).
        sr = hd.sr.srread(study.path)
        for group in sr.content.get_planar_roi_measurement_groups():
            echo = group.get_measurements(name=codes.ECHOGENICITY)
            derivations = [m.derivation.meaning for m in echo]
            assert len(set(derivations)) == len(derivations) and set(derivations) <= set(csv_name)
        report = read_measurement_report(study.path)
        rows = [r for result in study.results for r in measurement_rows(result)]
        text = "\n".join(format_table(report))
        labels = {i.name for i in reviewable_report(pydicom.dcmread(study.path)).items}
        for group in report.groups:
            for m in group.measurements:
                if not m.name.matches(codes.ECHOGENICITY):
                    continue
                checked += 1
                statistic = m.derivation.meaning
                assert m.label == f"Echogenicity ({statistic})"
                assert m.label in text and m.label in labels  # sr show and the QA page
                # The CSV row of the same image and statistic holds the same value.
                ref = group.images[0]
                frame = ref.frame_numbers[0] if ref.frame_numbers else 1
                (row,) = [
                    r for r in rows
                    if r.sop_instance_uid == ref.sop_instance_uid and r.frame == frame
                    and r.measurement == csv_name[statistic] and r.structure.lower() == str(group.finding_sites[0].site).lower()
                ] or [None]
                assert row is not None and row.value == pytest.approx(m.value)
    assert checked >= 3 * 5  # muscle groups give three statistics, nerve groups two


def test_csv_values_the_sr_lacked_before_are_in_it(studies):
    """Flattening ratio, mean thickness over the central half, subcutaneous thickness and each group's
    confidence (issue 18): verified or local codes, the right units, the CSV's values, labels that say
    what they are, and documents that still pass dciodvfy."""
    from pydicom.sr.codedict import codes as dictionary

    from mskus.commands.sr import format_table
    from pipeline.analysis import measurement_rows
    from qa_review.items import reviewable_report

    # The standard codes are the concept dictionary's.
    assert codes.SUBCUTANEOUS_TISSUE == dictionary.SCT.SubcutaneousTissue
    assert codes.THICKNESS == dictionary.LN.Thickness and codes.MEAN == dictionary.SCT.Mean
    assert codes.MEASUREMENT_METHOD == dictionary.SCT.MeasurementMethod
    assert {c.scheme_designator for c in (codes.FLATTENING_RATIO, codes.CENTRAL_HALF, codes.CONFIDENCE)} == {
        codes.LOCAL_SCHEME}
    seen = {"flattening_ratio": 0, "thickness_mean_central_half": 0, "subcutaneous_thickness": 0, "confidence": 0}
    for study in studies.values():
        errors, _ = dciodvfy(study.path)
        assert errors == [], f"{study.path.name}: {errors}"
        report = read_measurement_report(study.path)
        rows = [r for result in study.results for r in measurement_rows(result)]
        text = "\n".join(format_table(report))
        review_names = {i.name for i in reviewable_report(pydicom.dcmread(study.path)).items}

        def rows_of(group, name):
            ref = group.images[0]
            frame = ref.frame_numbers[0] if ref.frame_numbers else 1
            return [r for r in rows if r.sop_instance_uid == ref.sop_instance_uid and r.frame == frame
                    and r.measurement == name and r.value is not None]

        for group in report.groups:
            if not group.measurements or not group.images:
                continue  # not measured, or a study-level finding
            confidence = [m for m in group.measurements if m.name.matches(codes.CONFIDENCE)]
            is_fasciculation = any(m.name.value.startswith("FASC") for m in group.measurements)
            if is_fasciculation:
                continue  # a clip's values carry their own (per event) confidence
            (conf,) = confidence
            assert conf.unit.value == "1" and 0.0 <= conf.value <= 1.0 and conf.label == "Confidence"
            assert conf.derivation is None
            seen["confidence"] += 1
            finding = group.finding.key
            if finding == ("SCT", "84782009"):
                ratio = [m for m in group.measurements if m.name.matches(codes.FLATTENING_RATIO)]
                area = [m for m in group.measurements if m.name.matches(codes.AREA)]
                assert len(ratio) == len(area) <= 1  # only with the mm values, as the CSV has it
                if ratio:
                    (r,) = ratio
                    major, minor = (next(m.value for m in group.measurements if m.name.matches(c))
                                    for c in (codes.MAJOR_AXIS, codes.MINOR_AXIS))
                    assert r.unit.value == "1" and r.value == pytest.approx(major / minor)
                    assert r.label == "Flattening ratio" and r.label in text and r.label in review_names
                    seen["flattening_ratio"] += 1
            elif finding == ("SCT", "127954009") and any(m.name.matches(codes.THICKNESS) for m in group.measurements):
                (mean,) = [m for m in group.measurements if m.name.matches(codes.THICKNESS) and m.derivation is not None]
                assert mean.derivation.matches(codes.MEAN) and mean.method.matches(codes.CENTRAL_HALF)
                assert mean.unit.value == "mm"
                assert mean.label == "Thickness (Mean, central half of width)"
                assert mean.label in text and mean.label in review_names
                (row,) = rows_of(group, "thickness_mean_central_half")
                assert mean.value == pytest.approx(row.value, rel=1e-12) and conf.value == pytest.approx(row.confidence)
                seen["thickness_mean_central_half"] += 1
            elif finding == codes.concept_key(codes.SUBCUTANEOUS_TISSUE):
                (site,) = group.finding_sites
                assert site.site.matches(codes.SUBCUTANEOUS_TISSUE) and site.laterality is not None
                (region,) = group.regions
                assert region.graphic_type == "POLYLINE" and len(region.points) == 2  # the caliper
                assert region.points[0][0] == region.points[1][0]  # vertical, at the muscle caliper's column
                (thickness,) = [m for m in group.measurements if not m.name.matches(codes.CONFIDENCE)]
                assert thickness.name.matches(codes.THICKNESS) and thickness.unit.value == "mm"
                (row,) = rows_of(group, "subcutaneous_thickness")
                assert thickness.value == pytest.approx(row.value, rel=1e-12)
                assert region.points[1][1] - region.points[0][1] == pytest.approx(
                    row.value / row.mm_per_px, rel=1e-3)  # rows, calibrated as the value (square pixels here)
                assert "Subcutaneous tissue" in text
                seen["subcutaneous_thickness"] += 1
    assert all(n > 0 for n in seen.values()), seen
