"""Training-data helpers of the nerve segmenter (no torch needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, metadata_path
from training.data import Example, augment, elastic_field, fold_names, split_names, synthetic_examples


def _disk_example(size: int = 200, radius: float = 30.0) -> Example:
    yy, xx = np.mgrid[:size, :size]
    disk = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= radius**2
    image = np.where(disk, 60.0, 140.0).astype(np.float32)
    return Example("disk", image, disk.astype(np.uint8), synthetic=True)


def test_elastic_field_is_a_small_smooth_displacement():
    rng = np.random.default_rng(3)
    map_x, map_y = elastic_field(128, rng)
    grid = np.arange(128, dtype=np.float32)
    dx, dy = map_x - grid[None, :], map_y - grid[:, None]
    assert 0.0 < np.abs(dx).max() <= 0.025 * 128 + 1e-3
    assert 0.0 < np.abs(dy).max() <= 0.025 * 128 + 1e-3
    # smooth: neighbouring pixels move almost alike (no tearing of outlines)
    assert np.abs(np.diff(dx, axis=1)).max() < 0.2 and np.abs(np.diff(dy, axis=0)).max() < 0.2


def test_elastic_augmentation_bends_but_keeps_the_labelled_shape():
    example = _disk_example()
    plain = augment(example, 128, np.random.default_rng(7))
    bent = augment(example, 128, np.random.default_rng(7), elastic=1.0)
    assert plain[1].shape == bent[1].shape == (128, 128)
    # same affine view (its draws come first): the field moves the disk a little, its size stays
    assert (plain[1] != bent[1]).any()
    assert abs(int(bent[1].sum()) - int(plain[1].sum())) < 0.1 * plain[1].sum()
    assert set(np.unique(bent[1])) <= {0, 1}
    # the image follows the labels: the dark disk is where the label is
    image, labels = bent[0], bent[1].astype(bool)
    assert image[labels].mean() < image[~labels & bent[2]].mean()


def test_elastic_off_draws_nothing_from_the_generator():
    """elastic=0 (the default) leaves the random stream of model 1.2's recipe untouched.

    Any elastic probability above 0 draws a coin (here one that never bends), which shifts
    every later draw (the intensity augmentation): only elastic=0 must not.
    """
    example = _disk_example()
    off = augment(example, 96, np.random.default_rng(11), elastic=0.0)
    coin = augment(example, 96, np.random.default_rng(11), elastic=1e-12)
    assert np.array_equal(off[1], coin[1]) and np.array_equal(off[2], coin[2])  # same affine view, not bent
    assert not np.array_equal(off[0], coin[0])  # the coin moved the intensity draws


def test_centre_inside_synthetic_labels_are_smaller_than_fillpoly():
    touched = synthetic_examples(2, 200, seed=5)
    centre = synthetic_examples(2, 200, seed=5, centre_inside_labels=True)
    for t, c in zip(touched, centre):
        assert np.array_equal(t.image, c.image)
        # same scene; cv2.fillPoly also paints the pixels the outline touches
        assert 0 < (c.labels == 1).sum() < (t.labels == 1).sum()


def test_cross_validation_folds_partition_the_training_split_only():
    """Every training name is held out by exactly one fold; no fold touches the fixed validation split."""
    meta = json.loads(metadata_path(DEFAULT_MODEL_PATH).read_text())
    train, val = split_names(meta["split"]["train"] + meta["split"]["validation"])
    folds = [fold_names(train, k, 3) for k in range(3)]
    held = [name for _, out in folds for name in out]
    assert sorted(held) == sorted(train) and len(held) == len(set(held))
    for kept, out in folds:
        assert sorted(kept + out) == sorted(train) and not set(out) & set(kept)
        assert not (set(kept) | set(out)) & set(val)
        assert 0.3 * len(train) < len(out) < 0.37 * len(train)
    assert fold_names(list(reversed(train)), 1, 3) == folds[1], "the folds depend on the names, not their order"
    with pytest.raises(ValueError, match="fold"):
        fold_names(train, 2, 2)
