"""QA overlays draw every measured structure where it was measured."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.analysis_helpers import analyze_image
from pipeline.loading import load_ultrasound
from pipeline.overlay import draw_overlay
from tests.conftest import SAMPLE_DATA


def _green(image: np.ndarray) -> np.ndarray:
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return (g > 150) & (r < 100) & (b < 100)


def test_every_nerve_of_a_frame_is_outlined():
    image = load_ultrasound(SAMPLE_DATA / "01_nerve_mono.dcm")
    frame = image.frame(0)
    result = analyze_image(image).frames[0]
    moved = replace(result.nerve, contour_px=result.nerve.contour_px + np.array([0.0, 150.0]))
    two = replace(result, extra_nerves=(moved,))
    drawn = _green(draw_overlay(frame, two))
    for contour in (result.nerve.contour_px, moved.contour_px):
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 2
        assert drawn[y0:y1, x0:x1].sum() > 50
    single = _green(draw_overlay(frame, result))
    x0, y0 = np.floor(moved.contour_px.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(moved.contour_px.max(axis=0)).astype(int) + 2
    assert single[y0:y1, x0:x1].sum() == 0
