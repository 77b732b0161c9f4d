"""Calibration from the Sequence of Ultrasound Regions (CONTRACT.md section 6)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.calibration import CalibrationSource, PixelBox, calibration_for_frame, regions_from_sequence
from pipeline.errors import CalibrationError, UncalibratedError
from pipeline.loading import load_ultrasound
from tests.conftest import make_us_dataset, region_item


def test_tissue_region_gives_mm_per_px_and_box(speckle_image):
    ds = make_us_dataset(speckle_image, regions=[region_item((20, 10, 139, 109), delta_cm=0.008)])
    frame = load_ultrasound(ds).frame(0)
    cal = frame.calibration
    assert cal.source is CalibrationSource.ULTRASOUND_REGION
    assert cal.mm_per_px == pytest.approx(0.08)
    assert cal.tissue_box.as_tuple() == (20, 10, 139, 109)
    assert cal.distance_mm((30, 20), (30, 70)) == pytest.approx(4.0)
    assert cal.pixel_area_mm2 == pytest.approx(0.0064)


def test_anisotropic_region_scales_each_axis(speckle_image):
    item = region_item((20, 10, 139, 109))
    item.PhysicalDeltaX = 0.02
    item.PhysicalDeltaY = 0.01
    cal = load_ultrasound(make_us_dataset(speckle_image, regions=[item])).frame(0).calibration
    assert not cal.is_isotropic
    assert cal.distance_mm((30, 20), (40, 20)) == pytest.approx(2.0)
    assert cal.distance_mm((30, 20), (30, 30)) == pytest.approx(1.0)


def test_largest_tissue_region_selected_among_several(speckle_image):
    regions = [
        region_item((0, 0, 19, 19), delta_cm=0.05),
        region_item((20, 10, 139, 109), delta_cm=0.01),
        region_item((140, 10, 159, 50), delta_cm=0.01, data_type=13, spatial_format=5, units=0),
    ]
    cal = load_ultrasound(make_us_dataset(speckle_image, regions=regions)).frame(0).calibration
    assert cal.tissue_region is not None and cal.tissue_region.box.as_tuple() == (20, 10, 139, 109)
    assert len(cal.regions) == 3


def test_measurement_spanning_two_regions_is_refused(speckle_image):
    regions = [region_item((0, 0, 79, 119), delta_cm=0.01), region_item((80, 0, 159, 119), delta_cm=0.01)]
    cal = load_ultrasound(make_us_dataset(speckle_image, regions=regions)).frame(0).calibration
    cal.check_measurement([(10, 10), (70, 100)])  # inside one region: fine
    with pytest.raises(CalibrationError, match="spans two ultrasound regions"):
        cal.distance_mm((10, 10), (120, 10))


def test_colour_flow_box_inside_tissue_region_is_fine(speckle_image):
    regions = [region_item((20, 10, 139, 109)), region_item((60, 40, 100, 80), data_type=2)]
    cal = load_ultrasound(make_us_dataset(speckle_image, regions=regions)).frame(0).calibration
    cal.check_measurement([(65, 45), (90, 75)])
    assert cal.tissue_region is not None and cal.tissue_region.is_tissue


def test_measurement_in_region_with_other_units_is_refused(speckle_image):
    regions = [region_item((20, 10, 139, 79)), region_item((20, 80, 139, 109), data_type=3, spatial_format=3, units=4)]
    cal = load_ultrasound(make_us_dataset(speckle_image, regions=regions)).frame(0).calibration
    with pytest.raises(CalibrationError, match="without 2D cm calibration"):
        cal.check_measurement([(30, 85), (60, 100)])
    with pytest.raises(CalibrationError, match="outside every"):
        cal.check_measurement([(5, 5), (30, 30)])


def test_region_without_cm_units_falls_back_to_pixel_spacing(speckle_image):
    ds = make_us_dataset(speckle_image, regions=[region_item((20, 10, 139, 109), units=0)])
    ds.PixelSpacing = [0.2, 0.1]  # row spacing (y), column spacing (x)
    cal = load_ultrasound(ds).frame(0).calibration
    assert cal.source is CalibrationSource.PIXEL_SPACING
    assert (cal.mm_per_px_x, cal.mm_per_px_y) == (0.1, 0.2)
    assert "Pixel Spacing" in cal.note and "Pixel Spacing fallback" in cal.describe()
    # The tissue region still bounds the analysis area.
    assert cal.tissue_box.as_tuple() == (20, 10, 139, 109)


def test_pixel_spacing_fallback_without_regions_estimates_tissue_box(speckle_image):
    ds = make_us_dataset(speckle_image)
    ds.PixelSpacing = [0.1, 0.1]
    cal = load_ultrasound(ds).frame(0).calibration
    assert cal.source is CalibrationSource.PIXEL_SPACING
    assert "Sequence of Ultrasound Regions missing" in cal.note
    assert cal.tissue_box_estimated
    x0, y0, x1, y1 = cal.tissue_box.as_tuple()
    assert abs(x0 - 20) <= 3 and abs(y0 - 10) <= 3 and abs(x1 - 139) <= 3 and abs(y1 - 109) <= 3


def test_uncalibrated_state_refuses_every_mm_request(speckle_image):
    cal = load_ultrasound(make_us_dataset(speckle_image)).frame(0).calibration
    assert cal.source is CalibrationSource.UNCALIBRATED and not cal.is_calibrated
    assert cal.mm_per_px_x is None
    assert "Sequence of Ultrasound Regions missing" in cal.note
    for request in (lambda: cal.mm_per_px, lambda: cal.pixel_area_mm2, lambda: cal.distance_mm((0, 0), (1, 1))):
        with pytest.raises(UncalibratedError, match="no ultrasound calibration"):
            request()


def test_per_frame_regions_override_shared_regions():
    rng = np.random.default_rng(1)
    cine = rng.integers(20, 200, size=(3, 60, 80), dtype=np.uint8)
    ds = make_us_dataset(cine, regions=[region_item((0, 0, 79, 59), delta_cm=0.01)])
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    groups = []
    for delta in (0.01, 0.02, None):
        group = Dataset()
        if delta is not None:
            group.SequenceOfUltrasoundRegions = Sequence([region_item((0, 0, 79, 59), delta_cm=delta)])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    image = load_ultrasound(ds)
    assert image.has_per_frame_regions
    scales = [f.calibration.mm_per_px for f in image.iter_frames()]
    assert scales == pytest.approx([0.1, 0.2, 0.1])


def test_region_bounds_are_inclusive_and_clipped_to_frame():
    regions = regions_from_sequence([region_item((120, 60, 800, 518))])
    from pydicom.dataset import Dataset

    cal = calibration_for_frame(Dataset(), regions, rows=600, columns=800)
    assert cal.tissue_box == PixelBox(120, 60, 799, 518)
    assert PixelBox(0, 0, 9, 9).contains([(9.4, 0), (9.6, 0)]).tolist() == [True, False]
