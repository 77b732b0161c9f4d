"""Muscle thickness and echogenicity (CONTRACT.md section 4) against ground truth.

The sample studies and the generator's scenes carry exact geometry; the
pymust phantoms were made by a physics simulator, not by our generator; the
DL_Track_US frame has a hand-drawn aponeurosis mask.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.calibration import PixelBox
from pipeline.errors import MskusInputError
from pipeline.loading import load_ultrasound
from pipeline.measurements.muscle import (
    DEEP_BOUNDARY_APONEUROSIS,
    DEEP_BOUNDARY_BONE,
    MuscleMeasurement,
    NoMuscleBoundariesError,
    measure_muscle,
)
from tests.conftest import SAMPLE_DATA, TEST_DATA

MUSCLE_FILES = [
    "04_muscle_mono",
    "05_muscle_bone",
    "06_muscle_jpeg",
    "08_muscle_uncalibrated",
    "10_muscle_pixelspacing",
]
THICKNESS_TOL_MM = 0.3
ECHO_TOL = 3.0
PYMUST = TEST_DATA / "pymust"
DL_TRACK = TEST_DATA / "dl-track-us-aponeurosis"


def _load(stem: str):
    frame = load_ultrasound(SAMPLE_DATA / f"{stem}.dcm").frame(0)
    truth = json.loads((SAMPLE_DATA / f"{stem}.json").read_text())["frames"][0]
    return frame, truth


def _measure_frame(frame) -> MuscleMeasurement:
    cal = frame.calibration
    return measure_muscle(frame.gray, cal.tissue_box, mm_per_px_x=cal.mm_per_px_x, mm_per_px_y=cal.mm_per_px_y)


@pytest.fixture(scope="module")
def sample_results() -> dict[str, tuple[MuscleMeasurement, dict, object]]:
    out = {}
    for stem in MUSCLE_FILES:
        frame, truth = _load(stem)
        out[stem] = (_measure_frame(frame), truth, frame)
    return out


def _edge_y(points: np.ndarray, x: float) -> float:
    return float(np.interp(x, points[:, 0], points[:, 1]))


@pytest.mark.parametrize("stem", MUSCLE_FILES)
def test_sample_thickness_matches_truth(sample_results, stem):
    m, truth, _ = sample_results[stem]
    scale = truth["mm_per_px"] or truth["render_mm_per_px"]
    # Thickness in px is always there; mm only when calibrated.
    assert abs(m.thickness_px * scale - truth["thickness_px"] * scale) <= THICKNESS_TOL_MM
    if truth["mm_per_px"] is not None:
        assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)
        assert m.thickness_mean_central_half_mm == pytest.approx(
            truth["thickness_mean_central_half_mm"], abs=THICKNESS_TOL_MM
        )
    # Both inner edges at the centre column, within 0.2 mm each.
    ys_true, yd_true = truth["inner_edges_px_at_center"]
    xc = truth["center_x_px"]
    assert abs(_edge_y(m.superficial_edge_px, xc) - ys_true) * scale <= 0.2
    assert abs(_edge_y(m.deep_edge_px, xc) - yd_true) * scale <= 0.2
    # The edges follow the true ones across the width (tilt, curvature).
    for key, pts in (("inner_edge_superficial_px", m.superficial_edge_px), ("inner_edge_deep_px", m.deep_edge_px)):
        true_pts = np.asarray(truth[key])
        err = np.array([_edge_y(pts, x) - y for x, y in true_pts])
        assert np.max(np.abs(err)) * scale <= 0.3, key
    assert m.tilt_deg == pytest.approx(truth["tilt_deg"], abs=1.0)


@pytest.mark.parametrize("stem", MUSCLE_FILES)
def test_sample_echogenicity_matches_truth(sample_results, stem):
    m, truth, _ = sample_results[stem]
    assert m.echogenicity.mean == pytest.approx(truth["echogenicity_mean"], abs=ECHO_TOL)
    assert m.echogenicity.sd == pytest.approx(truth["echogenicity_sd"], abs=ECHO_TOL)
    assert m.echogenicity.median == pytest.approx(truth["echogenicity_median"], abs=ECHO_TOL)
    # Same ROI definition: pixel counts agree to a few percent.
    assert m.echogenicity.pixel_count == pytest.approx(truth["echogenicity_roi_pixels"], rel=0.05)


@pytest.mark.parametrize("stem", MUSCLE_FILES)
def test_deep_boundary_kind(sample_results, stem):
    m, truth, _ = sample_results[stem]
    expected = DEEP_BOUNDARY_BONE if truth["bone"] else DEEP_BOUNDARY_APONEUROSIS
    assert m.deep_boundary == expected


def test_bone_surface_is_detected(sample_results):
    m, truth, _ = sample_results["05_muscle_bone"]
    assert truth["bone"] is True
    assert m.deep_boundary == "bone surface"
    assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)


@pytest.mark.parametrize("stem", ["04_muscle_mono", "05_muscle_bone", "10_muscle_pixelspacing"])
def test_subcutaneous_thickness(sample_results, stem):
    m, truth, _ = sample_results[stem]
    assert m.subcutaneous_thickness_mm == pytest.approx(truth["subcutaneous_thickness_mm"], abs=0.3)


def test_uncalibrated_reports_pixels_only(sample_results):
    m, truth, frame = sample_results["08_muscle_uncalibrated"]
    assert frame.calibration.mm_per_px_x is None
    assert m.thickness_mm is None
    assert m.thickness_mean_central_half_mm is None
    assert m.subcutaneous_thickness_mm is None
    assert m.mm_per_px_x is None and m.mm_per_px_y is None
    # Pixels are still measured, within 0.3 mm at the scale the image was rendered with.
    assert m.thickness_px == pytest.approx(truth["thickness_px"], abs=THICKNESS_TOL_MM / truth["render_mm_per_px"])
    assert m.thickness_mean_central_half_px > 0
    assert m.echogenicity.mean == pytest.approx(truth["echogenicity_mean"], abs=ECHO_TOL)


def test_calibration_scales_mm_not_pixels(sample_results):
    """The same pixels measured with another pixel size: px unchanged, mm scaled."""
    m, _, frame = sample_results["04_muscle_mono"]
    box = frame.calibration.tissue_box
    m2 = measure_muscle(frame.gray, box, mm_per_px_x=0.12, mm_per_px_y=0.12, nominal_mm_per_px=0.1)
    assert m2.thickness_px == pytest.approx(m.thickness_px, abs=0.5)
    assert m2.thickness_mm == pytest.approx(m2.thickness_px * 0.12, rel=1e-6)


def _box(img: np.ndarray) -> PixelBox:
    return PixelBox(0, 0, img.shape[1] - 1, img.shape[0] - 1)


@pytest.mark.parametrize(
    "image",
    [
        np.full((400, 400), 90, np.uint8),
        np.clip(np.random.default_rng(0).normal(70, 25, (420, 400)), 0, 255).astype(np.uint8),
        np.random.default_rng(1).integers(0, 256, (400, 420)).astype(np.uint8),
    ],
    ids=["flat", "gaussian-noise", "uniform-noise"],
)
def test_image_without_fasciae_is_refused(image):
    with pytest.raises(NoMuscleBoundariesError) as info:
        measure_muscle(image, _box(image), mm_per_px_x=0.1, mm_per_px_y=0.1)
    err = info.value
    assert isinstance(err, MskusInputError)
    assert err.code == "no_muscle_boundaries"
    assert str(err) and "\n" not in str(err)


def _speckle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Log-compressed blurred Rayleigh speckle, no structure."""
    z = rng.standard_normal((*shape, 2)).astype(np.float32)
    z = cv2.GaussianBlur(z, (0, 0), 1.5)
    env = np.hypot(z[..., 0], z[..., 1])
    db = 20 * np.log10(env / env.max() + 1e-6)
    return np.clip(255 * (db + 50) / 50, 0, 255).astype(np.uint8)


def test_single_band_is_not_a_muscle():
    """One fascia over speckle: there is no deep boundary to measure to."""
    img = _speckle(np.random.default_rng(3), (400, 400))
    img[120:128] = 230
    with pytest.raises(NoMuscleBoundariesError, match="deep|pair|brighter"):
        measure_muscle(img, _box(img), mm_per_px_x=0.1, mm_per_px_y=0.1)


def test_caliper_lies_on_the_edges_inside_the_box(sample_results):
    for stem, (m, truth, frame) in sample_results.items():
        box = frame.calibration.tissue_box
        (x0, y0), (x1, y1) = m.caliper_px
        assert box.contains([[x0, y0], [x1, y1]]).all(), stem
        # Starts at the centre column of the tissue region, on the superficial edge.
        assert x0 == pytest.approx(box.center_x, abs=1e-6)
        assert y0 == pytest.approx(_edge_y(m.superficial_edge_px, x0), abs=0.05)
        # Ends on the deep edge, perpendicular to it (shortest distance).
        assert y1 == pytest.approx(_edge_y(m.deep_edge_px, x1), abs=0.05)
        i = int(np.argmin(np.abs(m.deep_edge_px[:, 0] - x1)))
        tangent = m.deep_edge_px[min(i + 1, len(m.deep_edge_px) - 1)] - m.deep_edge_px[max(i - 1, 0)]
        caliper = np.array([x1 - x0, y1 - y0])
        cos = abs(np.dot(tangent, caliper)) / (np.linalg.norm(tangent) * np.linalg.norm(caliper))
        assert cos < 0.02, stem
        assert m.thickness_px == pytest.approx(float(np.hypot(*caliper)), rel=1e-9)
        # The edges are reported in frame coordinates across the tissue width.
        assert m.superficial_edge_px[:, 0].min() == pytest.approx(box.x0)
        assert m.superficial_edge_px[:, 0].max() == pytest.approx(box.x1)


def test_roi_stays_in_the_muscle_and_tissue_region(sample_results):
    m, truth, frame = sample_results["04_muscle_mono"]
    box = frame.calibration.tissue_box
    mask = m.roi_mask
    assert mask.shape == frame.gray.shape and mask.dtype == bool
    inside = np.zeros_like(mask)
    inside[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = True
    assert not (mask & ~inside).any()
    ys, xs = np.nonzero(mask)
    width = box.width
    rel = xs - box.x0 + 0.5
    assert rel.min() >= 0.2 * width and rel.max() <= 0.8 * width
    margin_px = 0.5 / truth["mm_per_px"]
    sup = np.interp(xs, m.superficial_edge_px[:, 0], m.superficial_edge_px[:, 1])
    deep = np.interp(xs, m.deep_edge_px[:, 0], m.deep_edge_px[:, 1])
    assert np.all(ys >= sup + margin_px - 1e-6)
    assert np.all(ys <= deep - margin_px + 1e-6)
    assert m.echogenicity.pixel_count == int(mask.sum())
    # The outline is closed around the mask.
    poly = m.roi_polygon_px
    assert poly.shape[1] == 2 and len(poly) >= 4
    assert box.contains(poly).all()


def test_roi_never_reaches_outside_a_small_tissue_box(sample_results):
    """A tissue box cut just below the deep edge: the ROI stays inside it."""
    m, _, frame = sample_results["04_muscle_mono"]
    box = frame.calibration.tissue_box
    y_deep = int(np.ceil(m.deep_edge_px[:, 1].max())) + 25
    small = PixelBox(box.x0, box.y0, box.x1, y_deep)
    m2 = measure_muscle(frame.gray, small, mm_per_px_x=0.1, mm_per_px_y=0.1)
    assert not m2.roi_mask[y_deep + 1 :].any()
    assert m2.thickness_mm == pytest.approx(m.thickness_mm, abs=0.1)


def test_excluded_colour_pixels_leave_the_roi(sample_results):
    m, _, frame = sample_results["04_muscle_mono"]
    cal = frame.calibration
    gray = frame.gray.copy()
    ys, xs = np.nonzero(m.roi_mask)
    # Paint a "colour Doppler" patch inside the ROI, saturated in the luma.
    patch = (slice(int(ys.min()) + 20, int(ys.min()) + 60), slice(int(xs.min()) + 10, int(xs.min()) + 60))
    gray[patch] = 255
    exclude = np.zeros_like(m.roi_mask)
    exclude[patch] = True
    m2 = measure_muscle(gray, cal.tissue_box, mm_per_px_x=0.1, mm_per_px_y=0.1, exclude=exclude)
    n_excluded = int((m2.roi_mask & exclude).sum())
    assert n_excluded > 0
    assert m2.echogenicity.pixel_count == int(m2.roi_mask.sum()) - n_excluded
    kept = m2.roi_mask & ~exclude
    assert m2.echogenicity.mean == pytest.approx(float(frame.gray[kept].mean()), abs=1e-9)
    assert m2.echogenicity.mean < 150  # none of the saturated patch
    m3 = measure_muscle(gray, cal.tissue_box, mm_per_px_x=0.1, mm_per_px_y=0.1)
    assert m3.echogenicity.mean > m.echogenicity.mean + 1.0  # without exclusion the patch counts


def test_repr_leaves_out_the_mask(sample_results):
    m, _, _ = sample_results["04_muscle_mono"]
    text = repr(m)
    assert "roi_mask" not in text and "thickness_mm" in text


# --- generator scenes: tilt, curvature, bone, pixel sizes, anisotropy -------------------


def _scene(seed: int, mm_per_px: float, **kwargs):
    generate = pytest.importorskip("sample_data.generate")
    rng = np.random.default_rng(seed)
    shape = (int(36 / mm_per_px), int(40 / mm_per_px))
    return generate.render_muscle_scene(rng, mm_per_px, shape_px=shape, **kwargs)


@pytest.mark.parametrize(
    ("seed", "mm_per_px", "kwargs"),
    [
        (101, 0.05, {"bone": True, "tilt_deg": 9.0, "curvature": 0.006}),
        (102, 0.13, {"bone": False, "tilt_deg": -10.0, "curvature": -0.002}),
        (103, 0.08, {"tilt_deg": 4.0, "myopathic": True, "thickness_mm": 8.0, "subcutaneous_mm": 2.0}),
        (104, 0.11, {"bone": True, "tilt_deg": -6.0, "curvature": 0.004, "subcutaneous_mm": 6.0}),
    ],
)
def test_generated_scenes(seed, mm_per_px, kwargs):
    img, truth = _scene(seed, mm_per_px, **kwargs)
    m = measure_muscle(img, _box(img), mm_per_px_x=mm_per_px, mm_per_px_y=mm_per_px)
    assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)
    assert m.thickness_mean_central_half_mm == pytest.approx(
        truth["thickness_mean_central_half_mm"], abs=THICKNESS_TOL_MM
    )
    assert m.deep_boundary == (DEEP_BOUNDARY_BONE if truth["bone"] else DEEP_BOUNDARY_APONEUROSIS)
    assert m.tilt_deg == pytest.approx(truth["tilt_deg"], abs=1.0)
    assert m.echogenicity.mean == pytest.approx(truth["echogenicity_mean"], abs=ECHO_TOL)


def test_anisotropic_pixels():
    """Stretching the columns changes pixels, not millimetres."""
    img, truth = _scene(105, 0.1, bone=False, tilt_deg=7.0)
    for fx in (0.8, 1.3):
        stretched = cv2.resize(img, None, fx=fx, fy=1.0, interpolation=cv2.INTER_LINEAR)
        m = measure_muscle(stretched, _box(stretched), mm_per_px_x=0.1 / fx, mm_per_px_y=0.1)
        assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)
        assert m.tilt_deg == pytest.approx(truth["tilt_deg"], abs=1.0)


def test_frame_offset_is_reported_in_frame_coordinates():
    img, truth = _scene(106, 0.09, bone=False, tilt_deg=2.0)
    frame = np.zeros((img.shape[0] + 150, img.shape[1] + 200), np.uint8)
    frame[90 : 90 + img.shape[0], 130 : 130 + img.shape[1]] = img
    frame[:40, :300] = 255  # burned-in text outside the tissue region
    box = PixelBox(130, 90, 130 + img.shape[1] - 1, 90 + img.shape[0] - 1)
    m = measure_muscle(frame, box, mm_per_px_x=0.09, mm_per_px_y=0.09)
    ys, yd = truth["inner_edges_px_at_center"]
    assert m.caliper_px[0][0] == pytest.approx(130 + truth["center_x_px"])
    assert m.caliper_px[0][1] == pytest.approx(90 + ys, abs=2.0)
    assert _edge_y(m.deep_edge_px, 130 + truth["center_x_px"]) == pytest.approx(90 + yd, abs=2.0)
    assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)


def test_pixel_mode_on_png_scale():
    """mm_per_px = 1.0 (PNG benchmarks): priors fall back to the nominal size, mm equal px."""
    img, truth = _scene(107, 0.1, bone=False)
    m = measure_muscle(img, _box(img), mm_per_px_x=1.0, mm_per_px_y=1.0)
    assert m.thickness_px == pytest.approx(truth["thickness_px"], abs=3.0)
    assert m.thickness_mm == pytest.approx(m.thickness_px)


# --- physics-simulated phantoms and a real frame ------------------------------------------


def _pymust_truth() -> list[dict]:
    return [t for t in json.loads((PYMUST / "truth.json").read_text()) if t["kind"] == "muscle"]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_pymust_phantoms(index):
    if not (PYMUST / "truth.json").exists():
        pytest.fail(f"test phantom data missing: {PYMUST}")
    truth = _pymust_truth()[index]
    frame = load_ultrasound(PYMUST / truth["file"]).frame(0)
    m = _measure_frame(frame)
    assert m.thickness_mm == pytest.approx(truth["thickness_mm"], abs=THICKNESS_TOL_MM)
    assert m.echogenicity.mean == pytest.approx(truth["echogenicity_mean"], abs=ECHO_TOL)
    assert m.deep_boundary == DEEP_BOUNDARY_APONEUROSIS


def test_real_thigh_frame_aponeurosis_gap():
    """DL_Track_US frame: gap between the hand-drawn aponeurosis bands at the centre (about 280 px)."""
    image_path = DL_TRACK / "image.tif"
    if not image_path.exists():
        pytest.fail(f"test data missing: {image_path}")
    rgb = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)[..., :3]
    gray = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
    mask = cv2.imread(str(DL_TRACK / "aponeurosis_mask.tif"), cv2.IMREAD_GRAYSCALE) > 127
    box = PixelBox(48, 68, 628, 530)  # the B-mode area of this export
    m = measure_muscle(gray, box, mm_per_px_x=1.0, mm_per_px_y=1.0)
    xc = int(round(m.caliper_px[0][0]))
    rows = np.flatnonzero(mask[:, xc])
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    gap_mask = runs[-1][0] - runs[0][-1]
    assert m.vertical_gap_px == pytest.approx(gap_mask, rel=0.04)
    assert m.deep_boundary == DEEP_BOUNDARY_APONEUROSIS


def test_input_validation():
    img = np.zeros((100, 100), np.float32)
    with pytest.raises(ValueError):
        measure_muscle(img, _box(img), mm_per_px_x=0.1, mm_per_px_y=0.1)
    img8 = np.zeros((100, 100), np.uint8)
    with pytest.raises(ValueError):
        measure_muscle(img8, _box(img8), mm_per_px_x=0.1, mm_per_px_y=None)
    tiny = np.zeros((30, 30), np.uint8)
    with pytest.raises(NoMuscleBoundariesError):
        measure_muscle(tiny, _box(tiny), mm_per_px_x=0.1, mm_per_px_y=0.1)
