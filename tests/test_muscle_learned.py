"""Muscle thickness on real scanner frames: learned aponeurosis proposals, refined edges, honest refusals.

Real frames: tests/data/dl-track-apo (DL_Track, Apache-2.0): one stacked-muscle frame of the training
part and 11 frames of the validation part (every 8th), with their aponeurosis masks.
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from benchmarks.muscle_real import gap_along_line, measure_frame, summarize, vertical_gap
from pipeline.annotations import burned_in_annotation_mask
from pipeline.errors import MskusInputError
from pipeline.loading import load_ultrasound
from pipeline.measurements.muscle import NoMuscleBoundariesError, ThicknessSite, measure_muscle
from pipeline.protocols import Protocol, ProtocolRules
from pipeline.segmentation import factory
from pipeline.segmentation.aponeurosis import (
    DEFAULT_APONEUROSIS_MODEL_PATH,
    AponeurosisParameters,
    LearnedAponeurosisFinder,
)
from pipeline.segmentation.muscle_bands import ClassicalBandSearch
from pipeline.segmentation.nerve_model import metadata_path
from pipeline.settings import build_analyzer, load_analysis_settings
from pipeline.sr.algorithm_items import muscle_algorithm
from pipeline.sr.content import frame_groups
from pipeline.sr.source_image import SourceImage
from pipeline.tissue_area import estimate_tissue_box
from tests.analysis_helpers import analyze_image
from tests.conftest import REPO, SAMPLE_DATA, TEST_DATA

APO = TEST_DATA / "dl-track-apo"
STACKED = "img_00011.png"
THREE_BANDS = "img_00043.png"  # the network sees all three bands (layer option)
SPLIT = json.loads((REPO / "training" / "aponeurosis_split.json").read_text())


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for name in (factory.ENV_CONFIG, factory.ENV_MUSCLE_KIND, factory.ENV_MUSCLE_MODEL):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def finder() -> LearnedAponeurosisFinder:
    return LearnedAponeurosisFinder()


def _sr_texts(groups) -> list[str]:
    """Every TEXT value in SR measurement groups (highdicom templates), depth first."""
    out: list[str] = []

    def walk(item) -> None:
        if "TextValue" in item:
            out.append(str(item.TextValue))
        for child in item.get("ContentSequence", []):
            walk(child)

    for group in groups:
        for item in group:
            walk(item)
    return out


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    gray = cv2.imread(str(APO / "images" / name), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(APO / "masks" / name), cv2.IMREAD_GRAYSCALE) > 127
    return gray, mask


# --------------------------------------------------------------------------------------
# The model and its split
# --------------------------------------------------------------------------------------


def test_model_is_shipped_small_and_identified(finder):
    meta = json.loads(metadata_path(DEFAULT_APONEUROSIS_MODEL_PATH).read_text())
    assert DEFAULT_APONEUROSIS_MODEL_PATH.stat().st_size < 5_000_000
    assert finder.net.sha256 == meta["sha256"]
    assert finder.net.short_hash in finder.version and meta["model_version"] in finder.version
    card = (REPO / "models" / "APONEUROSIS_MODEL_CARD.md").read_text()
    assert meta["sha256"] in card and "Apache" in card and "DL_Track" in card


def test_split_is_by_blocks_of_frame_numbers():
    from training.aponeurosis_data import BLOCK, GUARD, VALIDATION_BLOCKS, frame_number

    train, val = SPLIT["train"], SPLIT["validation"]
    assert not set(train) & set(val) and len(val) >= 60
    blocks = {(frame_number(n) - 1) // BLOCK for n in val}
    assert blocks == set(VALIDATION_BLOCKS)
    for name in train:  # no training frame within GUARD numbers of a validation block
        n = frame_number(name)
        assert all(not (b * BLOCK + 1 - GUARD <= n <= (b + 1) * BLOCK + GUARD) for b in VALIDATION_BLOCKS)
    assert STACKED in train
    assert THREE_BANDS in train
    assert sorted(p.name for p in (APO / "images").glob("*.png")) == sorted([STACKED, THREE_BANDS, *val[::8]])


# --------------------------------------------------------------------------------------
# Real frames
# --------------------------------------------------------------------------------------


def test_stacked_muscles_the_superficial_layer_is_measured(finder):
    """img_00011 (training part): three bands at the centre; the gap measured is the top two bands'."""
    gray, mask = _load(STACKED)
    m = measure_frame(gray, finder)
    assert m.boundaries.startswith("learned aponeurosis_unet")
    truth = gap_along_line(mask, *m.caliper_px)
    assert truth is not None
    assert m.thickness_px == pytest.approx(truth, rel=0.05)
    # Deeper than the top layer would be another muscle: the caliper ends above the second gap.
    x = int(round(m.caliper_px[0][0]))
    col = mask[:, x]
    starts = np.flatnonzero(col[1:] & ~col[:-1]) + 1
    assert len(starts) >= 2 and m.caliper_px[1][1] < starts[2 if col[0] else 1] + 0.05 * m.thickness_px + 3


def test_a_rule_can_name_the_deeper_layer(finder):
    """img_00043: layer 2 is the muscle between the second and third bands, measured along its caliper."""
    from benchmarks.muscle_real import _runs

    gray, mask = _load(THREE_BANDS)
    box = estimate_tissue_box(gray)
    exclude = burned_in_annotation_mask(gray, box)
    top = measure_muscle(gray, box, mm_per_px_x=None, mm_per_px_y=None, exclude=exclude, boundary_finder=finder)
    deeper = measure_muscle(gray, box, mm_per_px_x=None, mm_per_px_y=None, exclude=exclude, boundary_finder=finder,
                            layer=2)
    assert deeper.layer == 2 and deeper.caliper_px[0][1] > top.caliper_px[1][1] - 3
    # The mask's second and third runs along the layer-2 caliper line.
    (x0, y0), (x1, y1) = deeper.caliper_px
    length = float(np.hypot(x1 - x0, y1 - y0))
    t = np.arange(-2.0 * gray.shape[0], 2.0 * gray.shape[0], 0.25)
    xs, ys = x0 + t * (x1 - x0) / length, y0 + t * (y1 - y0) / length
    inside = (xs >= 0) & (xs <= gray.shape[1] - 1) & (ys >= 0) & (ys <= gray.shape[0] - 1)
    t, xs, ys = t[inside], xs[inside], ys[inside]
    runs = [r for r in _runs(mask[np.rint(ys).astype(int), np.rint(xs).astype(int)]) if r[1] - r[0] >= 4]
    assert len(runs) >= 3
    truth = float(t[runs[2][0]] - t[runs[1][1]] - 0.25)
    assert deeper.thickness_px == pytest.approx(truth, rel=0.05)
    with pytest.raises(NoMuscleBoundariesError, match="no muscle layer 4"):
        measure_muscle(gray, box, mm_per_px_x=None, mm_per_px_y=None, exclude=exclude, boundary_finder=finder, layer=4)
    rules = ProtocolRules.from_mapping({"version": 1, "attributes": ["SeriesDescription"], "rules": [
        {"protocol": "muscle", "site": "vastus intermedius muscle", "pattern": "INTERMEDIUS", "layer": 2}]})
    assert rules.rules[0].muscle_layer == 2
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="layer must be"):
        ProtocolRules.from_mapping({"version": 1, "attributes": ["SeriesDescription"], "rules": [
            {"protocol": "muscle", "site": "m", "pattern": "M", "layer": 0}]})


def test_validation_subset_meets_the_accuracy_targets(finder):
    """Every 8th validation frame: >= 85 % within 5 % of the mask gap; no gross failure; no wrong number."""
    rows = []
    for name in SPLIT["validation"][::8]:
        gray, mask = _load(name)
        try:
            m = measure_frame(gray, finder)
        except MskusInputError as exc:
            box = estimate_tissue_box(gray)
            rows.append({"file": name, "thickness_px": None, "truth_px": vertical_gap(mask, (box.x0 + box.x1) / 2),
                         "reason": str(exc), "ms": 0.0})
            continue
        truth = gap_along_line(mask, *m.caliper_px) or vertical_gap(mask, m.caliper_px[0][0])
        rows.append({"file": name, "thickness_px": m.thickness_px, "truth_px": truth, "ms": 0.0})
    figures = summarize(rows)
    assert figures["frames_with_reference"] == 11
    assert figures["within_5pct"] >= 0.85, figures
    assert figures["gross_failures"] <= 0.05, figures
    assert figures["reported_off_15pct"] <= 0.02, figures


def test_frames_without_a_muscle_are_refused_with_a_reason(finder):
    rng = np.random.default_rng(5)
    noise = np.clip(cv2.GaussianBlur(rng.gamma(2.0, 30.0, (480, 640)).astype(np.float32), (0, 0), 1.0), 0, 255)
    with pytest.raises(NoMuscleBoundariesError, match="muscle boundaries not found with confidence|no pair of fascia"):
        measure_frame(noise.astype(np.uint8), finder)
    # Real scanner frames of no muscle (cardiac, obstetric) and a short-axis nerve phantom, muscle protocol.
    for path in (TEST_DATA / "calibrated-dicom" / "JPGLosslessP14SV1_1s_1f_8b.dcm",
                 TEST_DATA / "calibrated-dicom" / "OBXXXX1A.dcm", TEST_DATA / "pymust" / "nerve_000.dcm"):
        result = analyze_image(load_ultrasound(path), protocol=Protocol.MUSCLE, boundary_finder=finder)
        frame = result.frames[0]
        assert frame.muscle is None, path.name
        assert frame.reason.startswith("muscle measurement refused: "), frame.reason


# --------------------------------------------------------------------------------------
# The site option
# --------------------------------------------------------------------------------------


def test_site_option_moves_the_caliper(finder):
    image = load_ultrasound(SAMPLE_DATA / "04_muscle_mono.dcm")
    frame = image.frame(0)
    cal = frame.calibration
    box = cal.tissue_box

    def caliper_x(site):
        m = measure_muscle(frame.gray, box, mm_per_px_x=cal.mm_per_px_x, mm_per_px_y=cal.mm_per_px_y,
                           boundary_finder=finder, site=site)
        return m.caliper_px[0][0], m

    centre, m_centre = caliper_x(None)
    assert centre == pytest.approx(box.x0 + (box.width - 1) / 2)
    quarter, _ = caliper_x(ThicknessSite("fraction", 0.25))
    assert quarter == pytest.approx(box.x0 + 0.25 * (box.width - 1))
    left_mm, _ = caliper_x(ThicknessSite("mm_from_left", 10.0))
    assert left_mm == pytest.approx(box.x0 + 10.0 / cal.mm_per_px_x)
    right_px, m_right = caliper_x(ThicknessSite("px_from_right", 20))
    assert right_px == pytest.approx(box.x1 - 20)
    assert m_right.site.describe() == "20 px from the right" and m_centre.site.is_default
    with pytest.raises(NoMuscleBoundariesError, match="outside the tissue region"):
        caliper_x(ThicknessSite("mm_from_left", 500.0))


def test_rules_file_names_the_site():
    rules = ProtocolRules.from_mapping({
        "version": 1,
        "attributes": ["SeriesDescription"],
        "rules": [{"protocol": "muscle", "site": "gastrocnemius muscle", "pattern": "GASTROC",
                   "thickness_site": {"px_from_left": 20}}],
    })
    assert rules.rules[0].thickness_site == ThicknessSite("px_from_left", 20.0)
    from pipeline.errors import UsageError

    for bad in ({"fraction": 2.0}, {"fraction": "half"}, {"middle": 1}, {"fraction": 0.5, "mm_from_left": 3}):
        with pytest.raises(UsageError, match="rule 1"):
            ProtocolRules.from_mapping({"version": 1, "attributes": ["SeriesDescription"], "rules": [
                {"protocol": "muscle", "site": "m", "pattern": "M", "thickness_site": bad}]})
    with pytest.raises(UsageError, match="muscle rules only"):
        ProtocolRules.from_mapping({"version": 1, "attributes": ["SeriesDescription"], "rules": [
            {"protocol": "nerve", "site": "n", "pattern": "N", "thickness_site": {"fraction": 0.3}}]})


# --------------------------------------------------------------------------------------
# Configuration, fallback, the SR
# --------------------------------------------------------------------------------------


def test_default_is_learned_and_the_sr_names_the_model(finder):
    assert factory.load_muscle_boundary_config().boundaries == "learned"
    assert isinstance(factory.make_boundary_finder(), LearnedAponeurosisFinder)
    image = load_ultrasound(SAMPLE_DATA / "04_muscle_mono.dcm")
    result = analyze_image(image)
    frame = result.frames[0]
    assert frame.muscle is not None and frame.muscle.boundaries == f"learned {finder.version}"
    source = SourceImage.from_dataset(image.dataset, label="04")
    groups = frame_groups(frame, source, nerve_algo=muscle_algorithm(), muscle_algo=muscle_algorithm())
    texts = _sr_texts(groups)
    assert f"boundaries=learned {finder.version}" in texts, texts


def test_model_missing_falls_back_to_classical_and_the_sr_says_so(tmp_path, monkeypatch, caplog):
    missing = tmp_path / "aponeurosis_unet.onnx"
    with caplog.at_level(logging.WARNING):
        fallback = factory.make_boundary_finder(model=missing)
    assert isinstance(fallback, ClassicalBandSearch)
    assert any("aponeurosis model file not found" in r.getMessage() for r in caplog.records)
    image = load_ultrasound(SAMPLE_DATA / "04_muscle_mono.dcm")
    frame = analyze_image(image, boundary_finder=fallback).frames[0]
    assert frame.muscle is not None
    assert frame.muscle.boundaries.startswith("classical band search (learned finder unavailable: aponeurosis model")
    source = SourceImage.from_dataset(image.dataset, label="04")
    groups = frame_groups(frame, source, nerve_algo=muscle_algorithm(), muscle_algo=muscle_algorithm())
    texts = _sr_texts(groups)
    assert any(t.startswith("boundaries=classical band search (learned finder unavailable") for t in texts), texts
    # The configured default falls back the same way.
    monkeypatch.setenv(factory.ENV_MUSCLE_MODEL, str(missing))
    assert isinstance(build_analyzer(load_analysis_settings()).boundary_finder, ClassicalBandSearch)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="threshold"):
        AponeurosisParameters(threshold=1.5)
    with pytest.raises(ValueError, match="unknown muscle boundaries"):
        factory.make_boundary_finder("deep")
    with pytest.raises(ValueError, match="thickness site kind"):
        ThicknessSite("middle", 0.5)
