"""Doppler: colour-flow detection and intraneural / intramuscular vascularity (issue 19, CONTRACT.md section 4).

Synthetic colour-Doppler nerve frames come from ``sample_data/generate.py``
(:func:`make_doppler_nerve_case`: known flow inside and outside the nerve)
written in every photometric the loader supports; the real power-Doppler
(``US1_UNCR.dcm``) and palette (``OBXXXX1A.dcm``) files of pydicom-data (MIT)
check colour detection on scanner output (no nerve truth there).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from pipeline.analysis import analyze_frame, measurement_rows
from pipeline.inpaint import inpaint_missing
from pipeline.batch import BatchOptions, run_batch
from pipeline.loading import load_ultrasound
from pipeline.measurements.nerve import contour_mask
from pipeline.measurements.vascularity import (
    MIN_VESSEL_PX,
    NO_COLOUR_FLOW,
    DopplerHeader,
    detect_colour_flow,
    vascularity_grade,
)
from pipeline.overlay import draw_overlay
from pipeline.protocols import Laterality, load_protocol_rules
from pipeline.segmentation.base import NerveSegmentation, RimFeatures
from pipeline.sr.reader import read_measurement_report
from sample_data import generate as G
from sample_data.phantoms.doppler import _paint_flow_disc, _velocity_rgb
from tests.analysis_helpers import analyze_file, shipped_analyzer
from tests.conftest import SAMPLE_DATA, require_tool

#: The installed command (the console script beside this interpreter), else the package's __main__.
_SCRIPT = Path(sys.executable).with_name("mskus")
MSKUS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "mskus"]

#: (photometric, transfer syntax) of every colour interpretation the generator writes.
PHOTOMETRICS = {
    "RGB": ("RGB", ExplicitVRLittleEndian),
    "YBR_FULL": ("YBR_FULL", ExplicitVRLittleEndian),
    "PALETTE COLOR": ("PALETTE COLOR", ExplicitVRLittleEndian),
    "JPEG YBR_FULL_422": ("YBR_FULL_422", JPEGBaseline8Bit),
    "JPEG YBR_FULL": ("YBR_FULL", JPEGBaseline8Bit),
}
LOSSLESS = {"RGB", "YBR_FULL", "PALETTE COLOR"}


@pytest.fixture(scope="module")
def case() -> dict:
    """Three vessels inside the nerve, two small ones outside it and the artery beside it (seed 7)."""
    made = G.make_doppler_nerve_case(7, n_intraneural=3, n_extraneural=2)
    assert made["truth"]["vessel_count"] == 3
    assert sum(v["where"] == "outside" for v in made["truth"]["vessels"]) == 2
    return made


@pytest.fixture(scope="module")
def files(case, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("doppler")
    paths = {}
    for label, (photometric, ts) in PHOTOMETRICS.items():
        path = out / f"{label.replace(' ', '_')}.dcm"
        G.write_doppler_nerve_file(path, case, photometric=photometric, transfer_syntax=ts, label=label)
        paths[label] = path
    return paths


def _flow(path: Path):
    frame = load_ultrasound(path).frame(0)
    return frame, detect_colour_flow(frame.color, frame.calibration, frame.doppler, gray=frame.gray)


def _nerve_truth(case) -> np.ndarray:
    return G.contour_mask(np.asarray(case["truth"]["contour_px"]), case["truth"]["flow_mask"].shape)


# --------------------------------------------------------------------------------------
# Colour detection
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", list(PHOTOMETRICS))
def test_flow_pixels_are_found_on_every_photometric(label, case, files):
    frame, flow = _flow(files[label])
    assert frame.color is not None and flow.available and flow.boxes
    truth = case["truth"]["flow_mask"]
    if label in LOSSLESS or label == "JPEG YBR_FULL":
        # lossless, or JPEG without chroma subsampling: every painted pixel and nothing else
        assert int((flow.mask ^ truth).sum()) <= 2
    else:
        # 4:2:2 JPEG smears chroma; the half-maximum edge keeps the flow inside the nerve to within 15 %
        assert int((flow.mask ^ truth).sum()) <= 0.15 * truth.sum()
        nerve = _nerve_truth(case)
        assert abs(int((flow.mask & nerve).sum()) - int((truth & nerve).sum())) <= 0.15 * int((truth & nerve).sum())
    # only inside the colour box
    x0, y0, x1, y1 = case["truth"]["colour_box_px"]
    ys, xs = np.nonzero(flow.mask)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1


@pytest.mark.parametrize("label", list(PHOTOMETRICS))
def test_vascularity_of_the_nerve_on_every_photometric(label, case, files):
    result = analyze_file(files[label])
    (frame,) = result.frames
    assert frame.nerve is not None, frame.reason
    value = frame.doppler.nerve(0)
    assert value.measured, value.reason
    truth = case["truth"]
    assert value.vascularity_index == pytest.approx(truth["vascularity_index"], abs=1.0)
    assert value.vessel_count == truth["vessel_count"] == 3
    assert value.vascularity_grade == truth["vascularity_grade"] == 2
    assert frame.doppler.header.color_data_present is True and frame.doppler.header.prf_hz == G.DOPPLER_PRF_HZ
    # the colour pixels were in-painted for the segmenter
    assert frame.doppler.inpainted


def _free_spot(free: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """Top-left (x, y) of a ``height`` x ``width`` block of ``free`` pixels; marks it taken."""
    fits = cv2.erode(free.astype(np.uint8), np.ones((height, width), np.uint8), anchor=(0, 0), borderValue=0)
    ys, xs = np.nonzero(fits)
    assert len(xs), f"no free {width}x{height} block in the colour box"
    y, x = int(ys[0]), int(xs[0])
    free[max(0, y - 3) : y + height + 3, max(0, x - 3) : x + width + 3] = False
    return x, y


def test_colour_bar_text_and_markers_are_not_flow(case, tmp_path):
    canvas = case["frame"].copy()
    x0, y0, x1, y1 = case["truth"]["colour_box_px"]
    truth = case["truth"]["flow_mask"]
    free = np.zeros(truth.shape, bool)
    free[y0 + 1 : y1, x0 + 1 : x1] = True
    free &= ~cv2.dilate((truth | _nerve_truth(case)).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    # a velocity scale inside the colour box where nothing flows ...
    sx, sy = _free_spot(free, 24, 6)
    scale = np.stack([_velocity_rgb(v) for v in np.linspace(1.0, -1.0, 24)]).astype(np.uint8)
    canvas[sy : sy + 24, sx : sx + 6] = scale[:, None, :]
    # ... a colour patch under a declared colour-bar region (0x000E) ...
    bx, by = _free_spot(free, 7, 7)
    bar = G.UltrasoundRegion(x0=bx, y0=by, x1=bx + 6, y1=by + 6, delta_x=0.0, delta_y=0.0, units_x=0, units_y=0,
                             spatial_format=0, data_type=14)
    canvas[by : by + 7, bx : bx + 7] = (255, 0, 0)
    # ... yellow text and a green caliper cross on the tissue ...
    tx, ty = _free_spot(free, 12, 20)
    cv2.putText(canvas, "CF", (tx, ty + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_8)
    cx, cy = _free_spot(free, 11, 11)
    cv2.drawMarker(canvas, (cx + 5, cy + 5), (0, 255, 0), cv2.MARKER_CROSS, 9, 1)
    # ... and a shaded marker disc with a white letter on black (the image's edge), as scanners draw them
    mx, my = _free_spot(free, 22, 22)
    canvas[my : my + 22, mx : mx + 22] = 0
    cv2.circle(canvas, (mx + 11, my + 11), 7, (70, 110, 180), -1, cv2.LINE_AA)
    cv2.circle(canvas, (mx + 11, my + 11), 4, (110, 145, 200), -1, cv2.LINE_AA)
    cv2.putText(canvas, "P", (mx + 8, my + 15), cv2.FONT_HERSHEY_PLAIN, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    keep = truth.copy()
    added = np.any(canvas != case["frame"], axis=2) & ~truth
    assert added.sum() > 200
    case2 = dict(case, frame=canvas, regions=list(case["regions"]) + [bar])
    path = tmp_path / "annotated.dcm"
    G.write_doppler_nerve_file(path, case2, label="annotated")
    _, flow = _flow(path)
    assert int((flow.mask & added).sum()) == 0
    assert int((flow.mask ^ keep).sum()) == 0
    # with no colour box declared the whole tissue region is searched: still none of them is flow
    case3 = dict(case2, regions=[case["regions"][0], bar])
    G.write_doppler_nerve_file(path, case3, label="annotated-no-box")
    _, flow = _flow(path)
    assert not flow.boxes and int((flow.mask & added).sum()) == 0


def test_real_power_doppler_and_palette_files():
    """pydicom-data (MIT): a GE power-Doppler RGB export and a Philips PALETTE COLOR export."""
    frame, flow = _flow(Path(get_testdata_file("US1_UNCR.dcm", download=False)))
    assert flow.available and not flow.boxes  # no regions: the estimated tissue box is searched
    ys, xs = np.nonzero(flow.mask)
    assert len(xs) > 5000
    # all flow lies in the two colour boxes drawn on the image; the PWR colour scales at both edges are not flow
    assert xs.min() >= 85 and xs.max() <= 550 and ys.min() >= 145 and ys.max() <= 300
    assert not flow.mask[:, :60].any() and not flow.mask[:, 580:].any()
    frame, flow = _flow(Path(get_testdata_file("OBXXXX1A.dcm", download=False)))
    assert frame.doppler.color_data_present is True
    # colour data present but no flow in the image: the blue probe marker, ticks and header are no flow
    assert flow.available and flow.flow_pixel_count == 0


@pytest.mark.parametrize(
    "photometric, ts, quality",
    [
        ("RGB", ExplicitVRLittleEndian, 92),
        ("YBR_FULL", ExplicitVRLittleEndian, 92),
        ("PALETTE COLOR", ExplicitVRLittleEndian, 92),
        ("YBR_FULL_422", JPEGBaseline8Bit, 92),
        ("YBR_FULL_422", JPEGBaseline8Bit, 50),
        ("MONOCHROME2", ExplicitVRLittleEndian, 92),
    ],
)
def test_greyscale_frames_have_no_flow_and_no_doppler_values(photometric, ts, quality, case, tmp_path):
    path = tmp_path / "grey.dcm"
    G.write_doppler_nerve_file(path, case, photometric=photometric, transfer_syntax=ts, flow=False, jpeg_quality=quality)
    _, flow = _flow(path)
    assert not flow.available and flow.reason == NO_COLOUR_FLOW and flow.flow_pixel_count == 0
    result = analyze_file(path)
    (frame,) = result.frames
    assert frame.nerve is not None
    assert not frame.doppler.available and frame.doppler.nerve(0).vascularity_index is None
    rows = {r.measurement: r for r in measurement_rows(result)}
    for name in ("vascularity_index", "vessel_count", "vascularity_grade"):
        row = rows[name]
        assert row.value is None and row.status.value == "refused" and row.reason == NO_COLOUR_FLOW


def test_grey_rgb_with_color_data_present_is_a_doppler_frame_without_flow(case, tmp_path):
    """Header says colour flow, no colour in the pixels: flow 0 (a value), not absent."""
    path = tmp_path / "grey-flagged.dcm"
    G.write_doppler_nerve_file(path, dict(case, frame=case["grey"]), label="grey-flagged")
    (frame,) = analyze_file(path).frames
    value = frame.doppler.nerve(0)
    assert value.measured and value.vascularity_index == 0.0 and value.vessel_count == 0 and value.vascularity_grade == 0


# --------------------------------------------------------------------------------------
# Per nerve
# --------------------------------------------------------------------------------------


def test_flow_outside_the_nerve_is_not_counted(tmp_path):
    made = G.make_doppler_nerve_case(11, n_intraneural=0, n_extraneural=2)
    assert made["truth"]["intraneural_px"] == 0 and made["truth"]["flow_px"] > 100
    path = tmp_path / "outside.dcm"
    G.write_doppler_nerve_file(path, made, label="outside")
    result = analyze_file(path)
    (frame,) = result.frames
    value = frame.doppler.nerve(0)
    assert frame.doppler.flow_pixel_count > 100
    assert value.measured and value.vascularity_index == 0.0 and value.vessel_count == 0 and value.vascularity_grade == 0
    rows = {r.measurement: r for r in measurement_rows(result)}
    assert rows["vascularity_index"].status.value == "measured" and rows["vascularity_index"].value == 0.0


def test_sample_09_flow_beside_the_nerve_outside_the_colour_box(tmp_path):
    """09_nerve_doppler: the colour box lies around the vessel and not over the nerve."""
    truth = json.loads((SAMPLE_DATA / "09_nerve_doppler.json").read_text())["frames"][0]
    _, flow = _flow(SAMPLE_DATA / "09_nerve_doppler.dcm")
    assert flow.boxes[0].as_tuple() == tuple(truth["doppler_region_px"])
    assert flow.flow_pixel_count == truth["color_pixels"]
    # the colour velocity bar beside the gray bar (outside the tissue region) and the text are not flow
    assert not flow.mask[:, 700:].any()
    result = analyze_file(SAMPLE_DATA / "09_nerve_doppler.dcm")
    (measured,) = result.frames
    assert measured.nerve is not None
    assert measured.nerve.cross_sectional_area_mm2 == pytest.approx(truth["csa_mm2"], rel=0.05)
    value = measured.doppler.nerve(0)
    # no flow sampled over the nerve: no number, and the reason
    assert value.vascularity_index is None and "outside the colour-flow box" in value.reason
    assert measured.doppler.header.describe() == "Ultrasound Color Data Present YES"


def test_grade_scheme():
    assert [vascularity_grade(n) for n in range(7)] == [0, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError):
        vascularity_grade(-1)


def test_small_flow_specks_are_not_vessels(case, tmp_path):
    """Components under MIN_VESSEL_PX count in the index but not as vessels."""
    canvas = case["frame"].copy()
    nerve = _nerve_truth(case)
    free = nerve & ~cv2.dilate(case["truth"]["flow_mask"].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    inner = cv2.erode(free.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    ys, xs = np.nonzero(inner)
    y, x = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    speck = MIN_VESSEL_PX - 2
    canvas[y, x : x + speck] = (230, 60, 0)
    path = tmp_path / "speck.dcm"
    G.write_doppler_nerve_file(path, dict(case, frame=canvas), label="speck")
    (frame,) = analyze_file(path).frames
    value = frame.doppler.nerve(0)
    assert value.vessel_count == 3
    assert value.flow_px == case["truth"]["intraneural_px"] + speck


def test_segmenter_sees_colour_in_painted_and_csa_does_not_move(case, files, tmp_path):
    seen = {}

    class Spy:
        name, version = "spy", "1"

        def segment(self, gray, box, *, mm_per_px, exclude=None):
            seen["gray"], seen["exclude"] = gray, exclude
            contour = np.asarray(case["truth"]["contour_px"])
            return [NerveSegmentation(contour, contour, 0.9, RimFeatures(1.0, 3.0, 2.0, 0.8, 3.0, 2.0))]

    image = load_ultrasound(files["RGB"])
    frame = image.frame(0)
    choice = load_protocol_rules().choose(image.dataset)
    analyze_frame(frame, choice, Laterality.RIGHT, segmenter=Spy())
    flow = case["truth"]["flow_mask"]
    # colour pixels reach the segmenter in-painted from the grey around them, not as the colour's luma
    # and not as excluded pixels (which segmenters fill with one flat gray)
    assert not seen["exclude"][flow].any()
    grey_luma = case["grey"][..., 0].astype(float)
    assert np.abs(seen["gray"][flow] - grey_luma[flow]).mean() < np.abs(frame.gray[flow] - grey_luma[flow]).mean() / 2
    # and the CSA with flow equals the CSA of the same frame without it (within 5 %)
    plain = tmp_path / "plain.dcm"
    G.write_doppler_nerve_file(plain, case, flow=False, label="plain")
    with_flow = analyze_file(files["RGB"]).frames[0].nerve
    without = analyze_file(plain).frames[0].nerve
    assert with_flow.cross_sectional_area_mm2 == pytest.approx(without.cross_sectional_area_mm2, rel=0.05)


def test_inpaint_leaves_frames_without_colour_alone():
    gray = np.full((20, 20), 90, np.uint8)
    assert inpaint_missing(gray, np.zeros((20, 20), bool)) is gray


# --------------------------------------------------------------------------------------
# Muscle ROI
# --------------------------------------------------------------------------------------


def test_muscle_roi_gets_the_same_index(tmp_path):
    ds = pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm")
    gray = ds.pixel_array
    rgb = np.repeat(gray[..., None], 3, axis=2)
    grey_result = analyze_file(SAMPLE_DATA / "04_muscle_mono.dcm")
    (grey_frame,) = grey_result.frames
    assert grey_frame.doppler.muscle is not None and grey_frame.doppler.muscle.reason == NO_COLOUR_FLOW
    roi = grey_frame.muscle.roi_mask
    ys, xs = np.nonzero(cv2.erode(roi.astype(np.uint8), np.ones((25, 25), np.uint8)))
    rng = np.random.default_rng(3)
    painted = np.zeros(gray.shape, bool)
    for i in rng.choice(len(xs), 5, replace=False):
        painted |= _paint_flow_disc(rgb, (float(xs[i]), float(ys[i])), 3.5, rng, sign=1.0)
    ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration = "RGB", 3, 0
    ds.UltrasoundColorDataPresent = 1
    ds.PixelData = rgb.tobytes()
    path = tmp_path / "muscle_doppler.dcm"
    ds.save_as(path)
    result = analyze_file(path)
    (frame,) = result.frames
    value = frame.doppler.muscle
    assert value.measured and value.vessel_count is None
    expected = 100.0 * (painted & frame.muscle.roi_mask).sum() / frame.muscle.roi_mask.sum()
    assert expected > 0.1
    assert value.vascularity_index == pytest.approx(expected, abs=1e-9)
    rows = [r for r in measurement_rows(result) if r.measurement == "vascularity_index"]
    assert len(rows) == 1 and rows[0].unit == "%" and rows[0].value == pytest.approx(expected)
    assert not any(r.measurement in ("vessel_count", "vascularity_grade") for r in measurement_rows(result))


# --------------------------------------------------------------------------------------
# Header, outputs
# --------------------------------------------------------------------------------------


def test_doppler_header_is_read_and_malformed_values_are_absent(files):
    header = DopplerHeader.from_dataset(pydicom.dcmread(files["JPEG YBR_FULL_422"], stop_before_pixels=True))
    assert header.color_data_present is True and header.prf_hz == 1500.0 and header.lossy and header.subsampling == "422"
    assert header.describe() == "Ultrasound Color Data Present YES, PRF 1500 Hz"
    ds = pydicom.Dataset()
    ds.UltrasoundColorDataPresent = 0
    ds.PulseRepetitionFrequency = [1000, 2000]
    header = DopplerHeader.from_dataset(ds)
    assert header.color_data_present is False and header.prf_hz is None and not header.lossy
    assert DopplerHeader.from_dataset(pydicom.Dataset()) == DopplerHeader()


def test_csv_rows_sr_and_sr_show(case, files, tmp_path):
    """A batch run: measurements.csv rows, the SR's nerve group, dciodvfy, ``mskus sr show``."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "doppler.dcm").write_bytes(files["RGB"].read_bytes())
    # the greyscale twin, in the same study
    G.write_doppler_nerve_file(src / "grey.dcm", case, flow=False, label="RGB grey", study_label="RGB")
    out = tmp_path / "out"
    result = run_batch(BatchOptions(src, out, workers=1, progress_bar=False))
    assert result.studies_analysed == 1 and result.studies_failed == 0
    with open(out / "measurements.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    mine = {(r["source_file"], r["measurement"]): r for r in rows}
    truth = case["truth"]
    index = mine[("doppler.dcm", "vascularity_index")]
    assert index["status"] == "measured" and index["unit"] == "%"
    assert float(index["value"]) == pytest.approx(truth["vascularity_index"], abs=1.0)
    assert "PRF 1500 Hz" in index["reason"]
    assert float(mine[("doppler.dcm", "vessel_count")]["value"]) == 3
    assert mine[("doppler.dcm", "vessel_count")]["unit"] == "1" and mine[("doppler.dcm", "vascularity_grade")]["unit"] == "1"
    assert float(mine[("doppler.dcm", "vascularity_grade")]["value"]) == 2
    for name in ("vascularity_index", "vessel_count", "vascularity_grade"):
        row = mine[("grey.dcm", name)]
        assert row["value"] == "" and row["status"] == "refused" and row["reason"] == NO_COLOUR_FLOW

    (sr_path,) = out.glob("SR_*.dcm")
    report = read_measurement_report(sr_path)
    doppler_sop = pydicom.dcmread(files["RGB"], stop_before_pixels=True).SOPInstanceUID
    groups = {g.images[0].sop_instance_uid: g for g in report.groups if g.images}  # not the study findings
    group = groups[str(doppler_sop)]
    assert group.finding.value == "84782009"
    values = {m.name.value: m for m in group.measurements}
    assert values["VASC-INDEX"].name.scheme == "99MSKUS" and values["VASC-INDEX"].unit.value == "%"
    assert values["VASC-INDEX"].value == pytest.approx(float(index["value"]), rel=1e-9)
    assert values["VESSEL-COUNT"].value == 3 and values["VESSEL-COUNT"].unit.value == "1"
    assert values["VASC-GRADE"].value == 2 and values["VASC-GRADE"].unit.value == "1"
    notes = [e.value for e in group.evaluations if e.name.value == "COLOUR-FLOW"]
    assert notes == ["colour flow data: Ultrasound Color Data Present YES, PRF 1500 Hz"]
    assert any("vascularity" in p for p in group.algorithm.parameters)
    grey_group = next(g for uid, g in groups.items() if uid != str(doppler_sop))
    assert not any(m.name.value.startswith("VASC") for m in grey_group.measurements)
    assert [e.value for e in grey_group.evaluations if e.name.value == "COLOUR-FLOW"] == [
        f"vascularity not measured: {NO_COLOUR_FLOW}"
    ]
    ds = pydicom.dcmread(sr_path)
    assert "99MSKUS" in {item.CodingSchemeDesignator for item in ds.CodingSchemeIdentificationSequence}
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(sr_path)], capture_output=True, text=True, timeout=60)
    assert not [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    shown = subprocess.run([*MSKUS, "sr", "show", str(sr_path)], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.strip().startswith("Vascularity index") and line.rstrip().endswith("%") for line in lines)
    assert any(line.strip().startswith("Intraneural vessel count") for line in lines)
    assert any("no colour flow data" in line for line in lines)
    assert max(len(line) for line in lines) <= 100


def test_overlay_outlines_the_flow_pixels_counted(files):
    image = load_ultrasound(files["RGB"])
    frame = image.frame(0)
    shipped = shipped_analyzer()
    result = analyze_frame(frame, shipped.rules.choose(image.dataset), Laterality.RIGHT, segmenter=shipped.segmenter)
    value = result.doppler.nerve(0)
    assert len(value.flow_pixels) == value.flow_px > 0
    overlay = draw_overlay(frame, result)
    magenta = (overlay[..., 0] == 255) & (overlay[..., 1] == 0) & (overlay[..., 2] == 255)
    counted = np.zeros(frame.shape, np.uint8)
    counted[value.flow_pixels[:, 1], value.flow_pixels[:, 0]] = 1
    # every vessel counted is outlined, on its own pixels, and nothing else inside the nerve is
    n, labels = cv2.connectedComponents(counted, connectivity=8)
    assert all((magenta & (labels == k)).sum() >= 4 for k in range(1, n))
    nerve = contour_mask(result.nerve.contour_px, frame.shape)
    assert not (magenta & nerve & ~counted.astype(bool)).any()
    assert frame.color is not None and (magenta & ~nerve).any()  # the colour box


def test_review_page_overlay_drawn_from_the_sr_outlines_the_flow(case, files):
    """Without a QA overlay PNG (storage node) the review page draws the SR's contour and the flow in it."""
    from qa_review.model import Overlay
    from qa_review.render import render_overlay_png

    points = tuple((float(x) + 0.5, float(y) + 0.5) for x, y in case["truth"]["contour_px"])
    png = render_overlay_png(str(files["RGB"]), 1, (Overlay(kind="contour", points=points + points[:1], label=""),))
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    magenta = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 255)
    inside = case["truth"]["flow_mask"] & _nerve_truth(case)
    n, labels = cv2.connectedComponents(inside.astype(np.uint8), connectivity=8)
    assert n - 1 == 3 and all((magenta & (labels == k)).any() for k in range(1, n))
