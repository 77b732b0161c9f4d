"""The shipped nerve default on real scans: learned segmenter, calibrated confidence, never a letter.

Real frames: tests/data/usgra-seg (every 5th validation image of the nerve model) and
tests/data/calibrated-dicom (two real scanner DICOMs that hold no nerve).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pydicom
import pytest

from tests.analysis_helpers import analyze_file, analyze_image
from pipeline.annotations import burned_in_annotation_mask
from pipeline.calibration import PixelBox
from pipeline.loading import load_ultrasound
from pipeline.overlay import draw_overlay, line_width_px
from pipeline.protocols import Protocol
from pipeline.segmentation import factory
from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter
from pipeline.segmentation.nerve_confidence import ConfidenceCalibration
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, metadata_path
from pipeline.sr.algorithm_items import nerve_algorithm
from tests.conftest import REPO, SAMPLE_DATA, TEST_DATA

USGRA_SUBSET = TEST_DATA / "usgra-seg"
CALIBRATED = TEST_DATA / "calibrated-dicom"
META = json.loads(metadata_path(DEFAULT_MODEL_PATH).read_text())


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for name in (factory.ENV_CONFIG, factory.ENV_KIND, factory.ENV_MODEL):
        monkeypatch.delenv(name, raising=False)


def _with_pixels(tmp_path, pixels: np.ndarray, name: str) -> str:
    """sample_data/01_nerve_mono.dcm (calibrated, a nerve protocol) with other pixels."""
    ds = pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm")
    assert pixels.shape == (ds.Rows, ds.Columns) and pixels.dtype == np.uint8
    ds.PixelData = pixels.tobytes()
    path = tmp_path / name
    ds.save_as(path)
    return str(path)


def _text_frame() -> np.ndarray:
    """Black frame with burned-in caliper text and letters inside the tissue region."""
    img = np.zeros((600, 800), np.uint8)
    for i, text in enumerate(("D 3.3 cm", "C 1.06 cm", "Asc Ao Diam", "DC DC")):
        cv2.putText(img, text, (150, 130 + 90 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 255, 2, cv2.LINE_AA)
    return img


def _caliper_frame(speckle: bool = True) -> np.ndarray:
    """Two caliper crosses and a dotted line, as scanners draw them, on speckle-like tissue or black."""
    rng = np.random.default_rng(3)
    tissue = cv2.GaussianBlur(rng.gamma(2.0, 30.0, (600, 800)).astype(np.float32), (0, 0), 1.2)
    img = np.clip(tissue, 0, 200).astype(np.uint8) if speckle else np.zeros((600, 800), np.uint8)
    for x, y in ((250, 200), (400, 330)):
        cv2.drawMarker(img, (x, y), 255, cv2.MARKER_CROSS, 15, 2)
    for t in np.linspace(0.1, 0.9, 9):
        cv2.circle(img, (int(250 + 150 * t), int(200 + 130 * t)), 1, 255, -1)
    return img


# --------------------------------------------------------------------------------------
# The default
# --------------------------------------------------------------------------------------


def test_the_shipped_default_is_the_learned_segmenter():
    cfg = factory.load_segmentation_config()
    assert cfg.segmenter == "learned"
    seg = factory.make_segmenter()
    assert isinstance(seg, LearnedNerveSegmenter)
    assert nerve_algorithm(seg).name == "mskus-learned-nerve"
    assert seg.min_confidence == LearnedNerveParameters().min_confidence == 0.5
    comment = (REPO / "configs" / "segmentation.yaml").read_text()
    assert "The shipped default is learned" in comment and "fallback" in comment


def test_default_finds_the_annotated_nerve_on_a_real_frame():
    """0005.png (validation): the default reports a nerve that overlaps the annotation (Dice >= 0.5)."""
    from training.evaluate_nerve import load_example, true_nerve_regions
    from pipeline.measurements.nerve import contour_mask

    gray, labels = load_example("0005.png", USGRA_SUBSET)
    seg = factory.make_segmenter()
    found = [s for s in seg.segment(gray, PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1), mm_per_px=None)
             if s.confidence >= seg.min_confidence]
    assert found, "no nerve reported"
    mask = contour_mask(found[0].contour_px, gray.shape)
    best = max(2 * (mask & t).sum() / (mask.sum() + t.sum()) for t in true_nerve_regions(labels))
    assert best >= 0.5


# --------------------------------------------------------------------------------------
# Never a letter, caliper or marker
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["JPGLosslessP14SV1_1s_1f_8b.dcm", "OBXXXX1A.dcm"])
def test_real_scanner_frames_without_a_nerve_give_no_nerve(name):
    result = analyze_file(CALIBRATED / name, protocol="nerve")
    assert not result.failed
    frame = result.frames[0]
    assert frame.nerve is None and frame.reason.startswith("no nerve found"), frame.reason


@pytest.mark.parametrize("kind", ["classical", "learned", "auto"])
@pytest.mark.parametrize("frame", ["text", "caliper", "blank"])
def test_text_caliper_and_blank_frames_give_no_nerve(tmp_path, kind, frame):
    pixels = {"text": _text_frame(), "caliper": _caliper_frame(speckle=False), "blank": np.zeros((600, 800), np.uint8)}[frame]
    path = _with_pixels(tmp_path, pixels, f"{frame}.dcm")
    result = analyze_image(load_ultrasound(path), protocol=Protocol.NERVE, segmenter=factory.make_segmenter(kind))
    assert result.frames[0].nerve is None, f"{kind} reported a nerve on a {frame} frame"
    assert result.frames[0].reason.startswith("no nerve found")


def test_calipers_on_the_nerve_border_leave_its_area(tmp_path):
    """An operator's caliper crosses on the rim are in-painted for the network, not flattened to a hole.

    Filling them with the tissue median broke the rim there: the phantom's CSA fell 18 % (measured when
    this test was written); in-painted, it stays within a few per cent of the clean frame's.
    """
    source = SAMPLE_DATA / "01_nerve_mono.dcm"
    contour = np.asarray(json.loads(source.with_suffix(".json").read_text())["frames"][0]["contour_px"])
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array.copy()
    for k in (np.argmin(contour[:, 0]), np.argmax(contour[:, 0])):  # a diameter, as it is measured
        cv2.drawMarker(pixels, (int(round(contour[k, 0])), int(round(contour[k, 1]))), 255, cv2.MARKER_CROSS, 15, 2)
    marked = _with_pixels(tmp_path, pixels, "calipers.dcm")
    frame = load_ultrasound(marked).frame(0)
    assert burned_in_annotation_mask(frame.gray, frame.calibration.tissue_box).any(), "the crosses must be found"
    clean, with_calipers = (
        analyze_image(load_ultrasound(path), protocol=Protocol.NERVE).frames[0].nerve for path in (source, marked)
    )
    assert clean is not None and with_calipers is not None
    assert with_calipers.cross_sectional_area_mm2 == pytest.approx(clean.cross_sectional_area_mm2, rel=0.06)


def test_annotation_mask_finds_text_and_calipers_not_tissue():
    text = burned_in_annotation_mask(_text_frame())
    drawn = _text_frame() > 127
    assert (text & drawn).sum() >= 0.9 * drawn.sum()
    caliper = _caliper_frame()
    mask = burned_in_annotation_mask(caliper)
    assert mask[200, 250] and mask[330, 400], "caliper crosses not found"
    # Tissue: no pixel of any synthetic sample or phantom's tissue region is taken for an annotation.
    for path in sorted(SAMPLE_DATA.glob("0[1-6]*.dcm")):
        frame = load_ultrasound(path).frame(0)
        box = frame.calibration.tissue_box
        assert not burned_in_annotation_mask(frame.gray, box).any(), path.name


# --------------------------------------------------------------------------------------
# Confidence that means something
# --------------------------------------------------------------------------------------


def test_confidence_is_calibrated_on_the_validation_split():
    record = META["confidence_calibration"]
    calibration = ConfidenceCalibration.from_metadata(META)
    assert calibration.fitted
    # Monotone, within [0, 1], and "confidence >= 0.8" was right at least 95 % of the time.
    raws = np.linspace(0.0, 1.0, 101)
    values = [calibration(r) for r in raws]
    assert all(0.0 <= v <= 1.0 for v in values) and all(b >= a for a, b in zip(values, values[1:]))
    row = next(r for r in record["table"] if r["confidence_at_least"] == 0.8)
    assert row["hit_share"] >= 0.95
    # The table counts hits with the outline that ships (a hit is judged on the reported contour).
    assert record["checked_with_outline"] == factory.make_segmenter().settings.outline
    card = (REPO / "models" / "MODEL_CARD.md").read_text()
    assert "Confidence calibration" in card


def test_low_confidence_is_refused_with_the_reason():
    seg = LearnedNerveSegmenter(parameters=LearnedNerveParameters(min_confidence=0.999))
    result = analyze_image(load_ultrasound(SAMPLE_DATA / "01_nerve_mono.dcm"), protocol=Protocol.NERVE, segmenter=seg)
    frame = result.frames[0]
    assert frame.nerve is None
    assert "below the floor 1.00" in frame.reason and frame.reason.startswith("no nerve found with confidence")


def test_floor_must_be_a_probability():
    with pytest.raises(ValueError, match="min_confidence"):
        LearnedNerveParameters(min_confidence=1.5)


# --------------------------------------------------------------------------------------
# Figures on the fixed subset (no timing)
# --------------------------------------------------------------------------------------


def test_subset_figures_vessels_are_not_nerves():
    """The default on the in-repo validation subset: no vessel reported as a nerve (target <= 2 %).

    The issue's hit-rate, Dice and area targets are not met (models/MODEL_CARD.md); they are not
    asserted here.
    """
    from training.evaluate_nerve import FlooredSegmenter, evaluate

    seg = factory.make_segmenter()
    names = sorted(p.name for p in (USGRA_SUBSET / "images").glob("*.png"))
    got = evaluate(FlooredSegmenter(seg, seg.min_confidence), names, folder=USGRA_SUBSET)
    assert got["reported_nerves"] > 0
    assert got["vessel_fp_rate"] <= 0.02


def test_reported_figures_carry_the_floor_the_signed_median_and_an_interval():
    """What the accuracy benchmark reports for a nerve set: evaluate's figures with the floor applied, plus the
    signed median and a bootstrap interval of the signed mean that holds the mean and repeats exactly."""
    from training.evaluate_nerve import FlooredSegmenter, evaluate, reported_figures

    seg = factory.make_segmenter()
    names = sorted(p.name for p in (USGRA_SUBSET / "images").glob("*.png"))
    got = reported_figures(seg, names, folder=USGRA_SUBSET)
    plain = evaluate(FlooredSegmenter(seg, seg.min_confidence), names, folder=USGRA_SUBSET)
    assert got["min_confidence"] == seg.min_confidence
    assert got["reported_nerves"] == plain["reported_nerves"] and got["hit_rate"] == plain["hit_rate"]
    err = got["area_error_px"]
    low, high = err["mean_signed_relative_95ci"]
    assert low < err["mean_signed_relative"] < high
    assert err["median_signed_relative"] is not None
    assert reported_figures(seg, names, folder=USGRA_SUBSET)["area_error_px"]["mean_signed_relative_95ci"] == [low, high]


# --------------------------------------------------------------------------------------
# The QA overlay
# --------------------------------------------------------------------------------------


def test_overlay_contour_is_visible_at_normal_size():
    assert line_width_px((600, 800)) == 2 and line_width_px((1200, 1600)) == 4
    image = load_ultrasound(SAMPLE_DATA / "01_nerve_mono.dcm")
    frame = image.frame(0)
    result = analyze_image(image, protocol=Protocol.NERVE).frames[0]
    assert result.nerve is not None
    drawn = draw_overlay(frame, result)
    green = (drawn[..., 1] >= 200) & (drawn[..., 0] < 50) & (drawn[..., 2] < 50)
    dark = drawn.max(axis=2) < 60
    x, y = np.round(result.nerve.contour_px[0]).astype(int)
    window = (slice(y - 4, y + 5), slice(x - 4, x + 5))
    assert green[window].sum() >= 6 and dark[window].any(), "contour drawn thick with a dark outline"
