"""Training data for the nerve segmenter: the real annotated scans, synthetic nerves, augmentation.

Real: ``../shared/data/real/usgra-seg-train`` (CC-BY-4.0, tmkand/usgra-seg 2025).
Synthetic: short-axis nerve scenes from ``sample_data/generate.py``
(:func:`render_nerve_scene`), labelled from their exact geometry: nerve = the
inner border of the epineurial rim (CONTRACT.md section 4), vessel = the
anechoic vessel's circle.

Augmentation models device and operator differences: scale (field of view),
translation, small rotation, left-right flip (probe orientation), gain,
contrast, gamma (log-compression / dynamic range), a depth gain ramp (TGC),
speckle-like multiplicative noise, additive noise, blur and sharpening; a
smooth elastic deformation (soft tissue changes shape under the probe) is
optional.
Up-down flips are not used: depth is not symmetric in ultrasound (shadows and
enhancement lie below structures).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.geometry import polygon_mask
from training.evaluate_nerve import USGRA, all_names, load_example

REPO = Path(__file__).resolve().parents[1]

#: Seed of the fixed validation split; never change it (the split is recorded next to the model).
SPLIT_SEED = 20250811
N_VALIDATION = 40


def split_names(names: list[str] | None = None, n_val: int = N_VALIDATION, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(train, validation) file names: a seeded permutation of the sorted names."""
    names = sorted(names if names is not None else all_names())
    order = np.random.default_rng(seed).permutation(len(names))
    val = sorted(names[i] for i in order[:n_val])
    train = sorted(names[i] for i in order[n_val:])
    return train, val


def fold_names(train: list[str], fold: int, folds: int, seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(trained on, held out) for cross-validation fold ``fold`` (0-based) of ``folds`` over the training names.

    A seeded permutation of the sorted names dealt round-robin into ``folds``
    parts; every training name is held out by exactly one fold. The fixed
    validation split is never part of it.
    """
    if not 0 <= fold < folds or folds < 2:
        raise ValueError(f"fold must lie in 0..{folds - 1} with at least 2 folds, got {fold} of {folds}")
    names = sorted(train)
    order = np.random.default_rng(seed + 1).permutation(len(names))
    held = sorted(names[i] for i in order[fold::folds])
    kept = sorted(set(names) - set(held))
    return kept, held


@dataclass
class Example:
    """One training image, pre-resized so its longer side is ``base`` pixels."""

    name: str
    image: np.ndarray  # float32 0..255
    labels: np.ndarray  # uint8 0/1/2
    synthetic: bool


def _pre_resize(gray: np.ndarray, labels: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = gray.shape
    s = base / max(h, w)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    img = cv2.resize(gray.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    # Labels: area-resize the one-hot planes and take the arg-max (smooth edges, thin parts kept).
    planes = np.stack([(labels == k).astype(np.float32) for k in range(3)], axis=-1)
    lab = np.argmax(cv2.resize(planes, size, interpolation=cv2.INTER_AREA), axis=-1).astype(np.uint8)
    return img, lab


def load_real(names: list[str], base: int) -> list[Example]:
    out = []
    for name in names:
        gray, labels = load_example(name, USGRA)
        img, lab = _pre_resize(gray, labels, base)
        out.append(Example(name, img, lab, synthetic=False))
    return out


def synthetic_examples(n: int, base: int, seed: int, centre_inside_labels: bool = False) -> list[Example]:
    """``n`` synthetic nerve scenes (deterministic for a seed).

    ``centre_inside_labels``: label the pixels whose centres lie inside the
    contours (as the measurements count them); the default ``cv2.fillPoly``
    rasterisation, which also paints the pixels the outline touches, is what
    model 1.2 was trained with.
    """
    sys.path.insert(0, str(REPO / "sample_data"))
    try:
        import generate  # sample_data/generate.py
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(seed)
    shapes = [(400, 400), (360, 480), (440, 380), (420, 520)]
    out = []
    for i in range(n):
        shape = shapes[int(rng.integers(len(shapes)))]
        mm = float(rng.uniform(0.055, 0.11))
        img, truth = generate.render_nerve_scene(rng, mm, shape_px=shape, vessel=bool(rng.uniform() < 0.75))
        labels = np.zeros(img.shape, dtype=np.uint8)
        v = truth.get("vessel")
        if v:
            cx, cy = v["center_px"]
            t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
            circle = np.column_stack([cx + v["radius_px"] * np.cos(t), cy + v["radius_px"] * np.sin(t)])
            _fill(labels, circle, 2, centre_inside_labels)
        _fill(labels, np.asarray(truth["contour_px"], dtype=float), 1, centre_inside_labels)
        im, lab = _pre_resize(img, labels, base)
        out.append(Example(f"synthetic-{i:04d}", im, lab, synthetic=True))
    return out


def _fill(labels: np.ndarray, contour: np.ndarray, value: int, centre_inside: bool) -> None:
    if centre_inside:
        labels[polygon_mask(contour, labels.shape)] = value
        return
    pts = np.round(contour * 16).astype(np.int32)
    cv2.fillPoly(labels, [pts], value, lineType=cv2.LINE_8, shift=4)


def augment(
    ex: Example, size: int, rng: np.random.Generator, strength: float = 1.0, elastic: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random view of an example: (image float32 0..255, labels uint8, valid bool), all ``size`` x ``size``.

    ``elastic`` is the probability of a smooth elastic deformation on top of
    the affine view (:func:`elastic_field`).
    """
    h, w = ex.image.shape
    fit = size / max(h, w)
    scale = fit * math.exp(rng.uniform(math.log(0.75), math.log(1.35)) * strength)
    angle = rng.uniform(-10.0, 10.0) * strength
    # Centre of the view: the image centre, moved so the view stays mostly on the image.
    span_x = max(0.0, w - size / scale) / 2 + 0.1 * w
    span_y = max(0.0, h - size / scale) / 2 + 0.1 * h
    cx = w / 2 + rng.uniform(-span_x, span_x) * strength
    cy = h / 2 + rng.uniform(-span_y, span_y) * strength
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += (size / 2 - cx, size / 2 - cy)
    if rng.uniform() < 0.5:
        m = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    img = cv2.warpAffine(ex.image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    lab = cv2.warpAffine(ex.labels, m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    valid = cv2.warpAffine(np.ones_like(ex.labels), m, (size, size), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    if elastic > 0 and rng.uniform() < elastic:
        map_x, map_y = elastic_field(size, rng, strength)
        img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderValue=0.0)
        lab = cv2.remap(lab, map_x, map_y, cv2.INTER_NEAREST, borderValue=0)
        valid = cv2.remap(valid.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderValue=0) > 0
    img = intensity_augment(img, valid, rng, strength)
    return img, lab, valid


def elastic_field(size: int, rng: np.random.Generator, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sampling maps for :func:`cv2.remap`: a smooth random displacement of at most 2.5 % of ``size``.

    Nerves and vessels are soft and change shape with probe pressure and
    position; a smooth field (Gaussian-filtered noise, correlation length
    ``size / 10``) bends outlines without tearing them.
    """
    sigma = size / 10.0
    amplitude = rng.uniform(0.01, 0.025) * size * strength
    fields = []
    for _ in range(2):
        f = cv2.GaussianBlur(rng.uniform(-1.0, 1.0, (size, size)).astype(np.float32), (0, 0), sigma)
        fields.append(f * (amplitude / max(float(np.abs(f).max()), 1e-6)))
    grid = np.arange(size, dtype=np.float32)
    return grid[None, :] + fields[0], grid[:, None] + fields[1]


def intensity_augment(img: np.ndarray, valid: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Device differences: gain, contrast, gamma, TGC ramp, speckle, noise, blur/sharpen (float 0..255)."""
    out = img.astype(np.float32)
    n = out.shape[0]
    # speckle-like multiplicative noise, correlated over about a pixel
    if rng.uniform() < 0.6:
        field = rng.standard_normal(out.shape).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), rng.uniform(0.6, 1.5))
        field /= max(float(field.std()), 1e-6)
        out *= np.exp(rng.uniform(0.05, 0.3) * strength * field)
    # blur or sharpen (PSF differences)
    u = rng.uniform()
    if u < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3) * strength + 1e-3)
    elif u < 0.5:
        soft = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.8, 1.6))
        out = out + rng.uniform(0.2, 0.8) * strength * (out - soft)
    out = np.clip(out, 0.0, 255.0)
    # gamma (compression curve)
    gamma = math.exp(rng.uniform(math.log(0.6), math.log(1.6)) * strength)
    out = 255.0 * (out / 255.0) ** gamma
    # gain and contrast
    mean = float(out[valid].mean()) if valid.any() else float(out.mean())
    contrast = math.exp(rng.uniform(math.log(0.7), math.log(1.4)) * strength)
    gain = math.exp(rng.uniform(math.log(0.7), math.log(1.35)) * strength)
    out = ((out - mean) * contrast + mean) * gain
    # depth gain ramp (time-gain compensation set differently)
    ramp = 1.0 + rng.uniform(-0.35, 0.35) * strength * (np.arange(n, dtype=np.float32)[:, None] / n - 0.5)
    out = out * ramp
    # electronic noise
    if rng.uniform() < 0.5:
        out = out + rng.standard_normal(out.shape).astype(np.float32) * rng.uniform(0.0, 6.0) * strength
    out = np.clip(out, 0.0, 255.0)
    out[~valid] = 0.0
    return out.astype(np.float32)
