"""Clinical reading (issue 18): reference tables, flags, z-scores, study findings, levels, SR content."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pipeline.algorithm import AlgorithmIdentity
from pipeline.analysis import FrameResult, ImageResult, MeasurementRow, RowStatus
from pipeline.batch.tables import MEASUREMENT_COLUMNS, ImageContext, measurement_cells
from pipeline.errors import UsageError
from pipeline.protocols import Laterality, Protocol, load_protocol_rules
from pipeline.reference import (
    Covariates,
    DeviceIdentity,
    Flag,
    ReadingKey,
    covariates_from_header,
    load_reference_tables,
    read_row,
    read_value,
    readings_for_rows,
    study_findings,
)
from pipeline.reference.loading import tables_from_mapping
from tests.conftest import SAMPLE_DATA, require_tool

TABLES = load_reference_tables()
CSA = "cross_sectional_area"
SOURCE = {"s": {"paper": "P", "table": "T1", "population": "healthy", "method": "mean+2SD", "verified": True}}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _row(structure: str, level: str, side: str, value: float | None, *, sop: str = "1.2.3", frame: int = 1,
         measurement: str = CSA, unit: str = "mm2") -> MeasurementRow:
    return MeasurementRow(
        study_uid="9", series_uid="8", sop_instance_uid=sop, frame=frame, source_file=f"{sop}.dcm", protocol="nerve",
        structure=structure, laterality=side, measurement=measurement, value=value, unit=unit,
        status=RowStatus.MEASURED if value is not None else RowStatus.REFUSED, level=level,
    )


# --------------------------------------------------------------------------------------
# Levels from the protocol rules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "description, site, level",
    [
        ("R MEDIAN NERVE WRIST", "median nerve", "wrist"),
        ("L median forearm", "median nerve", "forearm"),
        ("median nerve upper arm", "median nerve", "upper arm"),
        ("ULNAR N ELBOW", "ulnar nerve", "elbow"),
        ("tibial popliteal fossa", "tibial nerve", "popliteal fossa"),
        ("peroneal nerve fibular head", "common peroneal nerve", "fibular head"),
        ("R C6 ROOT", "cervical nerve root", "C6"),
        ("plexus trunks", "brachial plexus", "trunks"),
        ("median wrist to forearm", "median nerve", ""),  # two levels: none, never guessed
        ("MEDIAN", "median nerve", ""),
        ("VASTUS INTERMEDIUS", "vastus intermedius muscle", ""),
    ],
)
def test_protocol_rules_give_site_and_level(description, site, level):
    ds = Dataset()
    ds.SeriesDescription = description
    choice = load_protocol_rules().choose(ds)
    assert (choice.site, choice.level) == (site, level)


def test_a_level_rule_for_an_unknown_site_is_refused():
    from pipeline.protocols import ProtocolRules

    data = {"version": 1, "attributes": ["SeriesDescription"], "rules": [{"protocol": "nerve", "site": "x", "pattern": "X"}],
            "levels": [{"site": "y", "level": "wrist", "pattern": "W"}]}
    with pytest.raises(UsageError, match="level 1: site 'y' is not the site of any rule"):
        ProtocolRules.from_mapping(data, source="rules.yaml")


# --------------------------------------------------------------------------------------
# Table validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, message",
    [
        ({"structure": "median nerve", "level": "wrist", "upper": 11, "colour": "red", "source": "s"},
         r"rows\[1\] \(median nerve wrist\): unknown key 'colour'"),
        ({"structure": "median nerve", "level": "wrist", "upper": "big", "source": "s"},
         r"rows\[1\] \(median nerve wrist\): key 'upper' must be a finite number"),
        ({"structure": "median nerve", "level": "wrist", "source": "s"}, r"key 'upper' or 'lower' is needed"),
        ({"structure": "median nerve", "level": "wrist", "upper": 11, "source": "nope"}, r"key 'source': 'nope' is not defined"),
        ({"structure": "median nerve", "level": "wrist", "lower": 12, "upper": 11, "source": "s"}, r"'lower' \(12\) must be below"),
        ({"structure": "median nerve", "upper": 11, "at_cutoff": "maybe", "source": "s"}, r"key 'at_cutoff'"),
    ],
)
def test_a_malformed_row_is_one_line_naming_file_row_and_key(tmp_path, row, message):
    import yaml

    path = _write(tmp_path, "clinic.yaml", yaml.safe_dump({"version": 1, "kind": "nerve_limits", "sources": SOURCE, "rows": [row]}))
    with pytest.raises(UsageError, match=message) as info:
        load_reference_tables([path])
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))


def test_unknown_kind_and_missing_source_fields_are_refused():
    with pytest.raises(UsageError, match="key 'kind' must be one of"):
        tables_from_mapping({"version": 1, "kind": "other", "sources": SOURCE, "rows": []}, source="f.yaml")
    with pytest.raises(UsageError, match=r"f.yaml: sources.s: key 'population' is missing"):
        tables_from_mapping({"version": 1, "kind": "nerve_limits", "sources": {"s": {"paper": "P", "table": "T", "method": "m",
                             "verified": False}}, "rows": []}, source="f.yaml")
    duplicate = {"structure": "median nerve", "level": "wrist", "upper": 11, "source": "s"}
    with pytest.raises(UsageError, match=r"rows\[2\].*same structure, level and measurement as rows\[1\]"):
        tables_from_mapping({"version": 1, "kind": "nerve_limits", "sources": SOURCE, "rows": [duplicate, duplicate]},
                            source="f.yaml")


def test_shipped_tables_load_and_every_row_names_its_source():
    assert TABLES.nerve_limits and TABLES.comparisons and TABLES.zscore_models
    for row in (*TABLES.nerve_limits, *TABLES.comparisons, *TABLES.zscore_models):
        assert row.source.paper and row.source.table and row.source.population and row.source.method
    assert all(m.example for m in TABLES.zscore_models), "the shipped muscle model is only an example"
    wfr = next(r for r in TABLES.comparisons if r.kind.value == "level_ratio")
    assert "NOT VERIFIED" in wfr.source.describe()


def test_a_clinic_table_replaces_the_default_of_its_kind(tmp_path):
    path = _write(tmp_path, "ours.yaml", """
version: 1
kind: nerve_limits
sources: {clinic: {paper: Our clinic 2025, table: local, population: 40 controls, method: mean +- 2 SD, verified: true}}
rows:
  - {structure: median nerve, level: wrist, lower: 6, upper: 12, source: clinic}
""")
    tables = load_reference_tables([path])
    assert len(tables.nerve_limits) == 1
    assert tables.comparisons == TABLES.comparisons  # other kinds kept
    assert read_value("median nerve", "wrist", CSA, 11.5, TABLES).flag is Flag.ENLARGED
    reading = read_value("median nerve", "wrist", CSA, 11.5, tables)
    assert reading.flag is Flag.NORMAL and (reading.reference_low, reading.reference_high) == (6.0, 12.0)
    assert read_value("median nerve", "wrist", CSA, 5.0, tables).flag is Flag.REDUCED
    assert "Our clinic 2025" in reading.reference_source


# --------------------------------------------------------------------------------------
# Flags at and around the cut-offs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, flag", [(10.99, Flag.NORMAL), (11.0, Flag.NORMAL), (11.01, Flag.ENLARGED), (30.0, Flag.ENLARGED)])
def test_median_wrist_upper_limit_of_normal(value, flag):
    reading = read_value("median nerve", "wrist", CSA, value, TABLES)
    assert reading.flag is flag
    assert reading.reference_high == 11.0 and reading.reference_low is None and reading.reference_source


def test_at_cutoff_abnormal_and_lower_limits(tmp_path):
    path = _write(tmp_path, "t.yaml", """
version: 1
kind: nerve_limits
sources: {s: {paper: P, table: T, population: X, method: M, verified: true}}
rows:
  - {structure: tibial nerve, level: ankle, lower: 5, upper: 13, at_cutoff: abnormal, source: s}
""")
    tables = load_reference_tables([path])
    assert read_value("tibial nerve", "ankle", CSA, 13.0, tables).flag is Flag.ENLARGED
    assert read_value("tibial nerve", "ankle", CSA, 12.9, tables).flag is Flag.NORMAL
    assert read_value("tibial nerve", "ankle", CSA, 5.0, tables).flag is Flag.REDUCED
    assert read_value("tibial nerve", "ankle", CSA, 5.1, tables).flag is Flag.NORMAL


def test_no_reference_gives_none_with_the_reason():
    unknown_level = read_value("median nerve", "", CSA, 12.0, TABLES)
    assert unknown_level.flag is Flag.NONE and "level unknown" in unknown_level.reason
    no_row = read_value("ulnar nerve", "forearm", CSA, 12.0, TABLES)
    assert no_row.flag is Flag.NONE and "no reference for ulnar nerve" in no_row.reason
    assert read_value("median nerve", "wrist", "perimeter", 12.0, TABLES).flag is Flag.NONE
    refused = read_row(_row("median nerve", "wrist", "R", None), TABLES)
    assert refused.flag is Flag.NONE and refused.reason.startswith("no value")
    extra = read_row(_row("median nerve (nerve 2)", "wrist", "R", 20.0), TABLES)
    assert extra.flag is Flag.NONE and "further nerve region" in extra.reason


# --------------------------------------------------------------------------------------
# z-scores (device-specific models)
# --------------------------------------------------------------------------------------

EXAMPLE_DEVICE = DeviceIdentity("MSKUS-EXAMPLE-SCANNER", "", "MSK")


def test_zscore_with_covariates():
    # Example model: mean = 40 + 0.5 * age - 4 * male, SD 10.
    reading = read_value("rectus femoris muscle", "", "echogenicity_mean", 85.0, TABLES, device=EXAMPLE_DEVICE,
                         covariates=Covariates(age_years=50.0, male=1.0))
    assert reading.z_score == pytest.approx((85.0 - 61.0) / 10.0)
    assert reading.flag is Flag.INCREASED
    assert (reading.reference_low, reading.reference_high) == pytest.approx((41.0, 81.0))
    assert "EXAMPLE" in reading.reason
    low = read_value("rectus femoris muscle", "", "echogenicity_mean", 30.0, TABLES, device=EXAMPLE_DEVICE,
                     covariates=Covariates(age_years=50.0, male=1.0))
    assert low.flag is Flag.DECREASED


def test_zscore_without_a_covariate_or_on_another_device_is_none():
    missing = read_value("rectus femoris muscle", "", "echogenicity_mean", 85.0, TABLES, device=EXAMPLE_DEVICE,
                         covariates=Covariates(age_years=50.0))
    assert missing.flag is Flag.NONE and missing.z_score is None and "male missing" in missing.reason
    other = read_value("rectus femoris muscle", "", "echogenicity_mean", 85.0, TABLES,
                       device=DeviceIdentity("LOGIQ E9", "", "MSK"), covariates=Covariates(age_years=50.0, male=1.0))
    assert other.flag is Flag.NONE and "device- and preset-specific" in other.reason


def test_covariates_from_the_header():
    ds = Dataset()
    ds.PatientAge, ds.PatientSex, ds.PatientSize, ds.PatientWeight = "045Y", "F", "1.70", "65"
    assert covariates_from_header(ds) == Covariates(45.0, 0.0, 170.0, 65.0)
    bare = Dataset()
    bare.PatientBirthDate, bare.StudyDate = "19800101", "20200101"
    assert covariates_from_header(bare).age_years == pytest.approx(40.0, abs=0.01)
    assert covariates_from_header(Dataset()) == Covariates()


# --------------------------------------------------------------------------------------
# Study findings
# --------------------------------------------------------------------------------------


def test_wrist_and_forearm_give_ratio_and_delta_csa():
    rows = [_row("median nerve", "wrist", "R", 14.0, sop="1"), _row("median nerve", "forearm", "R", 8.0, sop="2")]
    found = {f.finding: f for f in study_findings(rows, TABLES)}
    wfr = found["wrist_to_forearm_ratio"]
    assert wfr.value == pytest.approx(1.75) and wfr.flag is Flag.INCREASED and wfr.reference_high == 1.4
    assert "wrist" in wfr.inputs and "forearm" in wfr.inputs
    delta = found["wrist_minus_forearm_difference"]
    assert delta.value == pytest.approx(6.0) and delta.flag is Flag.INCREASED and "Klauser" in delta.reference_source
    normal = {f.finding: f for f in study_findings(
        [_row("median nerve", "wrist", "L", 9.0, sop="1"), _row("median nerve", "forearm", "L", 8.0, sop="2")], TABLES)}
    assert normal["wrist_to_forearm_ratio"].flag is Flag.NORMAL  # 1.125
    assert normal["wrist_minus_forearm_difference"].flag is Flag.NORMAL  # 1 mm2
    at_cut = {f.finding: f for f in study_findings(
        [_row("median nerve", "wrist", "L", 10.0, sop="1"), _row("median nerve", "forearm", "L", 8.0, sop="2")], TABLES)}
    assert at_cut["wrist_minus_forearm_difference"].flag is Flag.INCREASED  # exactly 2 mm2: abnormal from 2


def test_right_minus_left_only_at_the_same_structure_and_level():
    wrist_vs_elbow = [_row("median nerve", "wrist", "R", 12.0, sop="1"), _row("ulnar nerve", "elbow", "L", 8.0, sop="2"),
                      _row("median nerve", "forearm", "L", 8.0, sop="3")]
    assert not [f for f in study_findings(wrist_vs_elbow, TABLES) if f.finding == "right_minus_left"]
    both = [_row("median nerve", "wrist", "R", 12.0, sop="1"), _row("median nerve", "wrist", "L", 9.0, sop="2")]
    (rl,) = [f for f in study_findings(both, TABLES) if f.finding == "right_minus_left"]
    assert rl.value == pytest.approx(3.0) and rl.level == "wrist" and rl.flag is Flag.NONE
    assert "no side-difference limit" in rl.reason


def test_a_cine_clip_counts_once():
    clip = [_row("median nerve", "wrist", "R", 20.0 + k * 0.1, sop="clip", frame=k + 1) for k in range(10)]
    single = [_row("median nerve", "wrist", "R", 10.0, sop="still")]
    from pipeline.reference import site_values

    (site,) = site_values(clip + single)
    assert (site.images, site.frames) == (2, 11)
    assert site.value == pytest.approx((20.45 + 10.0) / 2)  # median of the clip's median and the still


def test_sites_enlarged_focal_multifocal_diffuse():
    def pattern(rows):
        return next(f for f in study_findings(rows, TABLES) if f.finding == "sites_enlarged")

    focal = pattern([_row("median nerve", "wrist", "R", 15.0, sop="1"), _row("median nerve", "forearm", "R", 8.0, sop="2")])
    assert (focal.value, focal.pattern, focal.flag) == (1.0, "focal", Flag.ENLARGED)
    multi = pattern([_row("median nerve", "wrist", "R", 15.0, sop="1"), _row("median nerve", "upper arm", "R", 20.0, sop="2"),
                     _row("tibial nerve", "ankle", "R", 10.0, sop="3")])
    assert (multi.value, multi.pattern) == (2.0, "multifocal")
    diffuse = pattern([_row("median nerve", "wrist", "R", 15.0, sop="1"), _row("median nerve", "upper arm", "R", 20.0, sop="2"),
                       _row("tibial nerve", "ankle", "R", 20.0, sop="3")])
    assert diffuse.pattern == "diffuse"
    none = pattern([_row("median nerve", "wrist", "R", 9.0, sop="1")])
    assert (none.value, none.pattern, none.flag) == (0.0, "none", Flag.NORMAL)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def test_measurement_cells_carry_level_flag_and_interval():
    columns = {name: i for i, name in enumerate(MEASUREMENT_COLUMNS)}
    for name in ("level", "reference_low", "reference_high", "reference_source", "flag", "z_score"):
        assert name in columns
    row = _row("median nerve", "wrist", "R", 12.5)
    cells = measurement_cells(row, ImageContext(), read_row(row, TABLES))
    assert len(cells) == len(MEASUREMENT_COLUMNS)
    assert (cells[columns["level"]], cells[columns["flag"]], cells[columns["reference_high"]]) == ("wrist", "enlarged", "11.0")
    plain = measurement_cells(row, ImageContext())
    assert plain[columns["flag"]] == "none" and "not applied" in plain[columns["flag_reason"]]


# --------------------------------------------------------------------------------------
# SR: interval and normality in the standard way; dciodvfy; read back
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nerve_report(tmp_path_factory):
    from pipeline.loading import load_ultrasound
    from pipeline.measurements.nerve import measure_nerve
    from pipeline.sr import build_measurement_report, header_dataset

    image = load_ultrasound(SAMPLE_DATA / "01_nerve_mono.dcm")
    frame = next(iter(image.iter_frames()))
    box = frame.calibration.tissue_box
    cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    contour = np.stack([cx + 40 * np.cos(t), cy + 25 * np.sin(t)], axis=1)
    nerve = measure_nerve(frame.gray, contour, frame.calibration, confidence=0.9)
    result_frame = FrameResult(frame_index=0, protocol=Protocol.NERVE, site="median nerve", laterality=Laterality.RIGHT,
                               calibration=frame.calibration, nerve=nerve, level="wrist",
                               algorithm=AlgorithmIdentity("test-contour", "1"))
    result = ImageResult(source_file="01_nerve_mono.dcm", sop_instance_uid=image.sop_instance_uid,
                         sop_class_uid=image.sop_class_uid, study_instance_uid=image.study_instance_uid,
                         series_instance_uid=image.series_instance_uid, number_of_frames=image.number_of_frames,
                         frames=(result_frame,))
    from pipeline.analysis import measurement_rows

    rows = list(measurement_rows(result))
    readings = readings_for_rows(rows, TABLES)
    forearm = _row("median nerve", "forearm", "R", 8.0, sop="other")
    findings = study_findings([*rows, forearm], TABLES)
    doc = build_measurement_report([result], [header_dataset(image.dataset)], readings=readings, findings=findings,
                                   reference_files=TABLES.files)
    path = tmp_path_factory.mktemp("reference-sr") / "sr.dcm"
    doc.save_as(path, enforce_file_format=True)
    csa = nerve.cross_sectional_area_mm2
    return path, readings[ReadingKey(image.sop_instance_uid, 1, "median nerve", CSA)], csa


def test_sr_carries_interval_and_normality_and_reads_back(nerve_report):
    from pipeline.sr import read_measurement_report

    path, reading, csa = nerve_report
    report = read_measurement_report(path)
    group = report.groups[0]
    area = next(m for m in group.measurements if m.name.value == "42798000")
    assert area.value == pytest.approx(csa, rel=1e-5)
    assert area.normal_range_high == 11.0 and area.normal_range_low is None
    expected = {"normal": "17621005", "enlarged": "371879000"}[reading.flag.value]
    assert area.normality is not None and area.normality.value == expected
    assert "Source:" in area.normal_range_description
    site = group.finding_sites[0]
    assert site.modifier is not None and site.modifier.value == "8205005"  # wrist region (level)
    findings = [g for g in report.groups if (g.tracking_identifier or "").startswith("study finding")]
    assert any(m.name.value == "LEVEL-RATIO" and m.normal_range_high == 1.4 for g in findings for m in g.measurements)
    assert any("decision support, not diagnosis" in n.value for n in report.notes)


def test_sr_reads_back_with_highdicom(nerve_report):
    import highdicom as hd
    import pydicom

    path, _, _ = nerve_report
    doc = hd.sr.srread(path)
    groups = doc.content.get_planar_roi_measurement_groups()
    area = next(m for m in groups[0].get_measurements() if m.name.value == "42798000")
    assert area.value > 0
    children = [item.ConceptNameCodeSequence[0].CodeValue for item in area[0].ContentSequence]
    assert "121402" in children and "371933006" in children  # Normality, Normal Range Upper Limit
    assert pydicom.dcmread(path).Modality == "SR"


def test_sr_with_references_passes_dciodvfy(nerve_report):
    path, _, _ = nerve_report
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
