"""Outline refinement of learned nerve regions (pipeline/segmentation/nerve_outline.py).

- A synthetic rim phantom: the rim model puts the border on the inner border of the rim
  (CONTRACT.md section 4) from a network-like outline that is too large, so the area is within 5 %.
- The in-repo validation subset (tests/data/usgra-seg, 8 real images): the refined areas are closer
  to the annotators' than the network's, with the same hits.
- The sample_data phantoms through the shipped default: CSA median error within 5 %.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from pipeline.geometry import polygon_area, polygon_mask
from pipeline.segmentation import factory
from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter
from pipeline.segmentation.nerve_outline import OutlineParameters, level_contour, refine_outline
from tests.conftest import TEST_DATA

USGRA_SUBSET = TEST_DATA / "usgra-seg"
MM_PER_PX = 0.08


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for name in (factory.ENV_CONFIG, factory.ENV_KIND, factory.ENV_MODEL):
        monkeypatch.delenv(name, raising=False)


def _rim_phantom(seed: int):
    """A synthetic short-axis nerve (the sample-data generator): gray image and true inner border (px)."""
    from sample_data.phantoms.nerve import render_nerve_scene

    gray, truth = render_nerve_scene(np.random.default_rng(seed), MM_PER_PX, vessel=False, csa_mm2=9.0, n_tendons=0)
    return gray, np.asarray(truth["contour_px"], dtype=np.float64)


def _network_like(shape: tuple[int, int], truth: np.ndarray, grow_px: float):
    """A nerve margin whose decision boundary is the true border moved ``grow_px`` outward."""
    inside = polygon_mask(truth, shape).astype(np.uint8)
    signed = cv2.distanceTransform(inside, cv2.DIST_L2, 5) - cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    margin = np.clip((signed + grow_px) / 4.0, -1.0, 1.0).astype(np.float32)
    mask = margin > 0
    contour = level_contour(margin, mask, 0.0, grow_px=0.0)
    assert contour is not None
    return margin, mask, contour


def test_rim_model_finds_the_inner_border_of_synthetic_rims():
    """Network-like outlines 2 px inside, on, and 3 px outside the true border of three phantoms.

    The rim model (CONTRACT.md section 4) brings the area within 5 % in the median case (within 10 %
    in every case) and closer to the truth than the starting outline wherever that was off.
    """
    params = OutlineParameters(level=0.0, rim=True, min_prominence=2.0, min_rim_share=0.6)
    errors = []
    for seed in (11, 12, 13):
        gray, truth = _rim_phantom(seed)
        true_area = polygon_area(truth)
        for grow_px in (-2.0, 0.0, 3.0):
            margin, mask, contour = _network_like(gray.shape, truth, grow_px)
            refined = refine_outline(gray, margin, mask, contour, params, mm_per_px=MM_PER_PX)
            assert refined.rim_share >= 0.6 and math.isfinite(refined.rim_width_px)
            network_error = abs(polygon_area(contour) / true_area - 1.0)
            refined_error = abs(polygon_area(refined.contour_px) / true_area - 1.0)
            if grow_px != 0.0:
                assert refined_error < network_error, (seed, grow_px, refined_error, network_error)
            errors.append(refined_error)
    assert float(np.median(errors)) <= 0.05, errors
    assert max(errors) <= 0.10, errors


def test_rim_is_found_when_the_level_contour_lies_well_inside_it():
    """A network outline 2 px inside the true border, shrunk further by the shipped level 0.7.

    The ridge then lies beyond a band around the level contour; the search reaches as far past the
    network's outline, so the rim is still seen on most normals. Measured on these three phantoms:
    areas 9-16 % short with the search past the network's outline, 35-36 % short (rim seen on 71-92 % of
    the normals) when it stayed around the level contour.
    """
    params = OutlineParameters(level=0.7, rim=True, min_prominence=2.0, min_rim_share=0.6)
    for seed in (11, 12, 13):
        gray, truth = _rim_phantom(seed)
        margin, mask, contour = _network_like(gray.shape, truth, -2.0)
        refined = refine_outline(gray, margin, mask, contour, params, mm_per_px=MM_PER_PX)
        assert refined.rim_share >= 0.95, (seed, refined.rim_share)
        assert abs(polygon_area(refined.contour_px) / polygon_area(truth) - 1.0) < 0.2, seed
        assert polygon_area(refined.contour_px) > polygon_area(refined.level_contour_px)


def test_without_a_rim_the_level_contour_is_kept():
    rng = np.random.default_rng(1)
    gray = np.clip(70.0 * rng.rayleigh(1.0, (200, 240)) / math.sqrt(math.pi / 2), 0, 255).astype(np.uint8)
    margin, mask, contour = _ellipse_margin()
    refined = refine_outline(gray, margin, mask, contour, OutlineParameters(level=0.3, rim=True, min_prominence=4.0))
    assert not math.isfinite(refined.rim_width_px)
    np.testing.assert_array_equal(refined.contour_px, refined.level_contour_px)


def _ellipse_margin():
    yy, xx = np.mgrid[:200, :240].astype(np.float64)
    rho = np.hypot((xx - 120.0) / 30.0, (yy - 100.0) / 22.0)
    margin = np.clip((1.0 - rho) * 6.0, -1.0, 1.0).astype(np.float32)
    mask = margin > 0
    contour = level_contour(margin, mask, 0.0, grow_px=0.0)
    assert contour is not None
    return margin, mask, contour


def test_a_higher_level_gives_a_smaller_outline():
    margin, mask, contour = _ellipse_margin()
    areas = []
    for level in (-0.3, 0.0, 0.3, 0.6):
        line = level_contour(margin, mask, level, grow_px=15.0)
        assert line is not None
        areas.append(polygon_area(line))
    assert all(b < a for a, b in zip(areas, areas[1:])), areas
    assert areas[1] == pytest.approx(polygon_area(contour), rel=1e-6)


def test_outline_settings_are_validated_and_recorded():
    with pytest.raises(ValueError, match="outline"):
        LearnedNerveParameters(outline="hull")
    with pytest.raises(ValueError, match="level"):
        LearnedNerveParameters(outline="refined", outline_level=1.5)
    shipped = factory.make_segmenter()
    assert isinstance(shipped, LearnedNerveSegmenter)
    assert shipped.settings.outline == "refined"
    recorded = shipped.parameters.as_dict()
    for key in ("outline", "outline_level", "outline_rim", "outline_min_prominence", "outline_min_rim_share"):
        assert key in recorded
    # A segmenter built in code without settings behaves as the shipped one.
    assert LearnedNerveParameters() == shipped.settings


def test_refined_areas_are_closer_to_the_annotation_on_the_real_subset():
    """8 real validation images: same hits, smaller median and signed area error, Dice kept."""
    from training.evaluate_nerve import FlooredSegmenter, evaluate

    names = sorted(p.name for p in (USGRA_SUBSET / "images").glob("*.png"))
    shipped = factory.make_segmenter().settings
    figures = {}
    for outline in ("network", "refined"):
        seg = LearnedNerveSegmenter(parameters=LearnedNerveParameters(**{**shipped.as_dict(), "outline": outline}))
        figures[outline] = evaluate(FlooredSegmenter(seg, seg.min_confidence), names, folder=USGRA_SUBSET)
    net, ref = figures["network"], figures["refined"]
    assert ref["hit_rate"] == net["hit_rate"] and ref["reported_nerves"] == net["reported_nerves"]
    assert ref["area_error_px"]["median_abs_relative"] < net["area_error_px"]["median_abs_relative"] - 0.03
    assert abs(ref["area_error_px"]["mean_signed_relative"]) < abs(net["area_error_px"]["mean_signed_relative"])
    assert ref["dice_on_hits"] >= net["dice_on_hits"] - 0.02
    assert ref["vessel_fp"] == 0


def test_sample_data_phantom_csa_stays_within_5_percent():
    from training.evaluate_nerve import sample_data_figures

    figures = sample_data_figures(factory.make_segmenter())
    assert figures["detected"] == figures["nerve_frames"]
    assert figures["csa_median_abs_relative_error"] <= 0.05
    assert abs(figures["csa_mean_signed_relative_error"]) <= 0.05
