"""Sorting of the nerve segmenter's errors (training/diagnose_nerve_errors.py) on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from training.diagnose_nerve_errors import classify_regions, input_size_dice_ceiling, summarize


def _disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


SHAPE = (200, 300)


def test_each_kind_of_outcome_is_told_apart():
    left, right = _disk(SHAPE, (60, 100), 20), _disk(SHAPE, (100, 100), 20)
    alone = _disk(SHAPE, (220, 60), 20)
    small, large = _disk(SHAPE, (220, 150), 20), _disk(SHAPE, (150, 170), 15)
    missed = _disk(SHAPE, (40, 40), 10)
    reports = [
        left | right,  # two touching trunks reported as one nerve
        _disk(SHAPE, (220, 60), 20.5),  # close
        _disk(SHAPE, (220, 150), 14),  # half the area: under
        _disk(SHAPE, (150, 170), 19),  # 60 % more: over
        _disk(SHAPE, (270, 20), 8),  # matches no true region
    ]
    outcomes, unmatched = classify_regions("x.png", reports, [left, right, alone, small, large, missed])
    assert [o.outcome for o in outcomes] == ["merged", "merged", "close", "under", "over", "missed"]
    assert unmatched == 1
    assert outcomes[2].relative_area_error == pytest.approx(0.05, abs=0.02)
    assert outcomes[3].relative_area_error == pytest.approx(-0.51, abs=0.03)
    assert outcomes[5].relative_area_error is None and outcomes[5].dice == 0.0


def test_nothing_reported_misses_every_region():
    outcomes, unmatched = classify_regions("x.png", [], [_disk(SHAPE, (100, 100), 20)])
    assert [o.outcome for o in outcomes] == ["missed"] and unmatched == 0


def test_the_summary_splits_the_signed_mean_by_outcome():
    truths = [_disk(SHAPE, (60, 100), 20), _disk(SHAPE, (200, 100), 20)]
    reports = [_disk(SHAPE, (60, 100), 20), _disk(SHAPE, (200, 100), 28)]
    outcomes, unmatched = classify_regions("x.png", reports, truths)
    summary = summarize(outcomes, unmatched, [1.0, 1.0], 256)
    by_kind = summary["outcomes"]
    assert isinstance(by_kind, dict)
    over = by_kind["over"]["mean_relative_area_error"]
    assert over == pytest.approx((28 / 20) ** 2 - 1, abs=0.05)
    # The shares add up to the signed mean over all hits.
    shares = sum(v["share_of_signed_mean"] or 0.0 for v in by_kind.values())
    assert shares == pytest.approx(summary["signed_mean_relative_area_error"], abs=1e-3)


def test_input_size_ceiling_is_near_one_for_a_large_region_and_falls_for_a_tiny_one():
    large = _disk((600, 800), (400, 300), 60)
    tiny = _disk((600, 800), (400, 300), 2.5)
    assert input_size_dice_ceiling(large, 256) > 0.98
    assert input_size_dice_ceiling(tiny, 256) < input_size_dice_ceiling(tiny, 512) <= 1.0
    assert input_size_dice_ceiling(tiny, 64) < 0.8
