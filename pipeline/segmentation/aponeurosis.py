"""Learned aponeurosis finder: the network proposes the muscle layers' boundary bands.

A small U-Net (``models/aponeurosis_unet.onnx``, trained by
``training/train_aponeurosis_segmenter.py`` on the DL_Track frames, run
through onnxruntime, else OpenCV DNN, as
:class:`~pipeline.segmentation.nerve_model.NerveNet`) marks the aponeurosis /
fascia bands of a longitudinal B-mode frame. Each long connected band becomes a :class:`LayerBand`: its
centre line (a robust quadratic), its extent and the network's mean
probability. The bands, sorted by depth, *propose* the superficial and deep
boundaries of every muscle layer; the edge tracer of
:mod:`pipeline.segmentation.muscle_bands.edges` then places the inner edges on the image
(sub-pixel), so the network decides *which* bands, the image decides *where*.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.resources import shipped_model
from pipeline.segmentation.nerve_model import NerveNet

__all__ = [
    "DEFAULT_APONEUROSIS_MODEL_PATH",
    "AponeurosisNet",
    "AponeurosisParameters",
    "BandProposals",
    "LayerBand",
    "LearnedAponeurosisFinder",
]

logger = logging.getLogger(__name__)

#: The shipped model (repository ``models/`` folder).
DEFAULT_APONEUROSIS_MODEL_PATH = shipped_model("aponeurosis_unet.onnx")

APONEUROSIS = 1


class AponeurosisNet(NerveNet):
    """The aponeurosis network (classes background, aponeurosis); loading as :class:`NerveNet`.

    Parameters
    ----------
    path : path to the ``.onnx`` file.
    runtime : {"auto", "onnxruntime", "opencv"}, optional
        As for :class:`NerveNet` (default ``$MSKUS_MODEL_RUNTIME``, else ``auto``).
    """

    what = "aponeurosis"

    def __init__(self, path: str | Path = DEFAULT_APONEUROSIS_MODEL_PATH, runtime: str | None = None) -> None:
        super().__init__(path, runtime)


@dataclass(frozen=True)
class AponeurosisParameters:
    """Settings of the learned finder that affect results (recorded in the SR).

    Attributes
    ----------
    threshold : float
        Probability above which a pixel belongs to a band.
    min_extent_fraction : float
        Shortest band, as a share of the tissue region's width.
    min_superficial_extent_fraction : float
        Shortest band that may be the superficial boundary (a short bright
        patch near the skin is not the fascia of the muscle measured).
    """

    threshold: float = 0.5
    min_extent_fraction: float = 0.25
    min_superficial_extent_fraction: float = 0.35

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), not {self.threshold}")
        for name in ("min_extent_fraction", "min_superficial_extent_fraction"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], not {value}")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class LayerBand:
    """One boundary band proposed by the network, in crop pixels of the tissue region.

    Attributes
    ----------
    centre_coef : ndarray (3,)
        Quadratic ``y = polyval(centre_coef, x)`` through the band's centre, crop pixels.
    top_coef, bottom_coef : ndarray (3,)
        The same through the band's upper and lower borders (the network's edges).
    x_range : (float, float)
        First and last crop column the band covers.
    probability : float
        Mean network probability over the band.
    coverage : float
        Share of the columns in ``x_range`` where the band is present.
    """

    centre_coef: np.ndarray = field(repr=False)
    top_coef: np.ndarray = field(repr=False)
    bottom_coef: np.ndarray = field(repr=False)
    x_range: tuple[float, float]
    probability: float
    coverage: float

    def y(self, x: np.ndarray | float) -> np.ndarray:
        return np.polyval(self.centre_coef, x)

    def covers(self, x: float, margin: float = 0.0) -> bool:
        return self.x_range[0] - margin <= x <= self.x_range[1] + margin


@dataclass(frozen=True)
class BandProposals:
    """What the finder proposes for one frame: the bands (shallowest first) and the probability map.

    Both in crop pixels of the tissue region.
    """

    bands: tuple[LayerBand, ...]
    probability: np.ndarray = field(repr=False)
    #: Shortest band that may be the superficial boundary, share of the width.
    min_superficial_extent_fraction: float = 0.0


def _fit(xs: np.ndarray, ys: np.ndarray, w: np.ndarray) -> np.ndarray:
    deg = 2 if xs.size >= 12 else 1
    coef = np.polyfit(xs, ys, deg, w=w)
    for _ in range(2):  # drop gross outliers (a band touching another) and refit
        res = ys - np.polyval(coef, xs)
        scale = max(1.0, 1.4826 * float(np.median(np.abs(res))))
        keep = np.abs(res) <= 3.0 * scale
        if keep.sum() < max(4, deg + 2):
            break
        coef = np.polyfit(xs[keep], ys[keep], deg, w=w[keep])
    return np.concatenate([np.zeros(3 - coef.size), coef])


def bands_from_probability(prob: np.ndarray, parameters: AponeurosisParameters) -> list[LayerBand]:
    """Long boundary bands of an aponeurosis probability map (crop shape), shallowest first."""
    min_extent = parameters.min_extent_fraction
    rows, cols = prob.shape
    mask = (prob >= parameters.threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out: list[LayerBand] = []
    y_idx = np.arange(rows, dtype=np.float64)[:, None]
    for k in range(1, n):
        x0, width = int(stats[k, cv2.CC_STAT_LEFT]), int(stats[k, cv2.CC_STAT_WIDTH])
        if width < min_extent * cols:
            continue
        y0, height = int(stats[k, cv2.CC_STAT_TOP]), int(stats[k, cv2.CC_STAT_HEIGHT])
        sub = labels[y0 : y0 + height, x0 : x0 + width] == k
        p = np.where(sub, prob[y0 : y0 + height, x0 : x0 + width], 0.0)
        present = sub.any(axis=0)
        if present.sum() < 4:
            continue
        ys = y_idx[:height] + y0
        weight = p.sum(axis=0)
        centre = (p * ys).sum(axis=0) / np.maximum(weight, 1e-9)
        top = np.argmax(sub, axis=0) + y0 - 0.5
        bottom = height - 1 - np.argmax(sub[::-1], axis=0) + y0 + 0.5
        xs = np.arange(x0, x0 + width, dtype=np.float64)[present]
        w = weight[present]
        out.append(
            LayerBand(
                centre_coef=_fit(xs, centre[present], w),
                top_coef=_fit(xs, top[present].astype(np.float64), w),
                bottom_coef=_fit(xs, bottom[present].astype(np.float64), w),
                x_range=(float(x0), float(x0 + width - 1)),
                probability=float(prob[labels == k].mean()),
                coverage=float(present.mean()),
            )
        )
    xc = (cols - 1) / 2.0
    # Depth order at the columns the bands share with the centre (clipped to their extent).
    out.sort(key=lambda b: float(b.y(float(np.clip(xc, *b.x_range)))))
    return out


class LearnedAponeurosisFinder:
    """Boundary bands of the muscle layers from the aponeurosis network.

    Parameters
    ----------
    net : AponeurosisNet or path, optional
        The network (default: the shipped model).
    parameters : AponeurosisParameters, optional
    """

    name = "mskus-learned-aponeurosis"

    def __init__(self, net: AponeurosisNet | str | Path | None = None, parameters: AponeurosisParameters | None = None) -> None:
        self.net = net if isinstance(net, AponeurosisNet) else AponeurosisNet(net or DEFAULT_APONEUROSIS_MODEL_PATH)
        self.settings = parameters or AponeurosisParameters()

    @property
    def version(self) -> str:
        """Model file stem, version and the first 12 hex digits of its SHA-256."""
        return f"{self.net.path.stem} {self.net.model_version} sha256:{self.net.short_hash}"

    @property
    def parameters(self) -> dict[str, Any]:
        return {
            "model": self.net.path.name,
            "model_version": self.net.model_version,
            "model_sha256": self.net.short_hash,
            "model_input_size": self.net.input_size,
            "model_runtime": self.net.runtime,
            **self.settings.as_dict(),
        }

    def probability(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> np.ndarray:
        """Aponeurosis probability over the tissue region (crop shape, float32).

        The network sees the whole frame, as it was trained (scanner screens
        with the image, text and rulers at their usual scale); a band at the
        very edge of a tight tissue box keeps its context. Excluded pixels
        (annotations, colour) are filled with the tissue median first.
        """
        crop = Crop(tissue_box.clipped(*gray.shape))
        frame = gray
        if exclude is not None and exclude.any():
            inside = crop.apply(gray)[~crop.apply(exclude)]
            frame = gray.copy()
            frame[exclude] = np.uint8(np.median(inside)) if inside.size else 0
        return crop.apply(self.net.probabilities(frame)[APONEUROSIS])

    def find(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> BandProposals:
        """The boundary bands in the tissue region, shallowest first, and the probability map (crop pixels)."""
        prob = self.probability(gray, tissue_box, exclude)
        bands = tuple(bands_from_probability(prob, self.settings))
        return BandProposals(bands, prob, self.settings.min_superficial_extent_fraction)
