"""Crops keep track of their offset back to frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration import PixelBox
from pipeline.crop import Crop


def test_crop_round_trip_and_view():
    frame = np.arange(20 * 30).reshape(20, 30)
    crop = Crop(PixelBox(5, 3, 14, 11))
    view = crop.apply(frame)
    assert view.shape == crop.shape == (9, 10)
    assert view[0, 0] == frame[3, 5]
    points = np.array([[0.0, 0.0], [9.5, 8.0]])
    in_frame = crop.to_frame(points)
    assert in_frame.tolist() == [[5.0, 3.0], [14.5, 11.0]]
    assert np.allclose(crop.from_frame(in_frame), points)
    # A point found in the crop addresses the same pixel in the frame.
    y, x = np.unravel_index(np.argmax(view), view.shape)
    fx, fy = crop.to_frame([[x, y]])[0]
    assert frame[int(fy), int(fx)] == view.max()


def test_mask_to_frame_and_inset():
    crop = Crop(PixelBox(2, 1, 5, 4))
    mask = np.zeros(crop.shape, dtype=bool)
    mask[1, 2] = True
    full = crop.mask_to_frame(mask, (8, 8))
    assert list(zip(*np.nonzero(full))) == [(2, 4)]
    assert crop.inset(1).box == PixelBox(3, 2, 4, 3)


def test_crop_outside_image_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        Crop(PixelBox(0, 0, 50, 50)).apply(np.zeros((10, 10)))
