"""Learned nerve segmentation: the network's connected nerve regions, reported as nerves.

:class:`LearnedNerveSegmenter` runs the network
(:class:`~pipeline.segmentation.nerve_model.NerveNet`) on the tissue region
and reports each connected nerve region as its own nerve, with a sub-pixel
contour on the network's decision boundary and a calibrated confidence
(:class:`~pipeline.segmentation.nerve_confidence.ConfidenceCalibration`).
The regions (:class:`LabelRegion`, :class:`LearnedFrame`) are also the
proposals of :class:`~pipeline.segmentation.auto_nerve.AutoNerveSegmenter`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage.measure import find_contours

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.segmentation.base import NerveSegmentation, RimFeatures
from pipeline.segmentation.classical_nerve import _speckle_fwhm_px
from pipeline.segmentation.nerve_confidence import ConfidenceCalibration
from pipeline.segmentation.nerve_model import (
    DEFAULT_MODEL_PATH,
    NERVE,
    VESSEL,
    NerveNet,
    _model_parameters,
    _ParameterView,
)
from pipeline.segmentation.nerve_outline import OutlineParameters, refine_outline
from pipeline.segmentation.nerve_preprocess import _fill_excluded

#: Choices of :attr:`LearnedNerveParameters.outline`.
OUTLINES = ("network", "refined")

__all__ = ["OUTLINES", "LabelRegion", "LearnedFrame", "LearnedNerveParameters", "LearnedNerveSegmenter", "label_regions"]


@dataclass(frozen=True)
class LabelRegion:
    """One connected region of a class, in crop coordinates.

    Attributes
    ----------
    label : int
        1 nerve, 2 vessel.
    mask : ndarray of bool, crop shape
        The region's pixels.
    contour_px : ndarray (N, 2)
        Sub-pixel outline ``(x, y)`` on the decision boundary, crop pixels.
    area_px : float
        Pixel count.
    probability : float
        Mean probability of the class over the region.
    """

    label: int
    mask: np.ndarray = field(repr=False)
    contour_px: np.ndarray = field(repr=False)
    area_px: float
    probability: float

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @property
    def equivalent_radius_px(self) -> float:
        return math.sqrt(self.area_px / math.pi)


def _region_contour(margin: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Sub-pixel outline of ``mask`` on the zero level of ``margin`` (both crop-sized)."""
    ys, xs = np.nonzero(mask)
    pad = 3
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    sub_mask = mask[y0:y1, x0:x1]
    # Holes (dark fascicles the network called background) belong to the nerve.
    filled = np.zeros_like(sub_mask, dtype=np.uint8)
    outer, _ = cv2.findContours(sub_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, outer, -1, 1, thickness=-1)
    near = cv2.dilate(filled, np.ones((3, 3), np.uint8)).astype(bool)
    sub = np.where(near, margin[y0:y1, x0:x1], -1.0)
    sub = np.where(filled.astype(bool), np.maximum(sub, 1e-3), sub)
    sub = np.pad(sub, 1, constant_values=-1.0)
    lines = find_contours(sub, 0.0)
    if not lines:
        return None
    line = max(lines, key=len)
    if len(line) < 4:
        return None
    if np.allclose(line[0], line[-1]):
        line = line[:-1]
    # (row, col) of the padded sub-image -> (x, y) of the crop
    return np.column_stack([line[:, 1] - 1 + x0, line[:, 0] - 1 + y0])


def label_regions(prob: np.ndarray, label: int, min_area_px: float) -> list[LabelRegion]:
    """Connected regions where ``label`` is the most probable class, largest evidence first."""
    labels = np.argmax(prob, axis=0)
    mask = (labels == label).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    others = np.delete(prob, label, axis=0).max(axis=0)
    margin = prob[label] - others
    regions = []
    for k in range(1, count):
        if stats[k, cv2.CC_STAT_AREA] < min_area_px:
            continue
        region_mask = comp == k
        contour = _region_contour(margin, region_mask)
        if contour is None or len(contour) < 8:
            continue
        regions.append(
            LabelRegion(
                label=label,
                mask=region_mask,
                contour_px=contour,
                area_px=float(stats[k, cv2.CC_STAT_AREA]),
                probability=float(prob[label][region_mask].mean()),
            )
        )
    regions.sort(key=lambda r: r.probability * r.area_px, reverse=True)
    return regions


@dataclass(frozen=True)
class LearnedFrame:
    """The network's view of one tissue region (crop coordinates)."""

    crop: Crop
    probabilities: np.ndarray = field(repr=False)
    nerves: tuple[LabelRegion, ...]
    min_area_px: float = 0.0

    @property
    def vessel_mask(self) -> np.ndarray:
        return np.argmax(self.probabilities, axis=0) == VESSEL

    @property
    def vessels(self) -> tuple[LabelRegion, ...]:
        """The vessel regions (computed on demand: the nerve path does not need their outlines)."""
        return tuple(label_regions(self.probabilities, VESSEL, self.min_area_px))


def _nan_features(interior_to_surround: float = float("nan")) -> RimFeatures:
    nan = float("nan")
    return RimFeatures(
        rim_coverage=nan,
        rim_prominence=nan,
        rim_prominence_low=nan,
        interior_to_surround=interior_to_surround,
        rim_width_px=nan,
        psf_fwhm_px=nan,
    )


def _interior_to_surround(roi: np.ndarray, mask: np.ndarray) -> float:
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask
    if not ring.any() or not mask.any():
        return float("nan")
    return float(roi[mask].mean()) / max(float(roi[ring].mean()), 1.0)


@dataclass(frozen=True)
class LearnedNerveParameters:
    """Settings of the learned segmenter that affect results (recorded in the SR).

    Attributes
    ----------
    min_region_fraction : float
        Smallest nerve region, as a share of the tissue region's area.
    min_region_mm2 : float
        Smallest nerve region in mm² (calibrated frames only).
    max_nerves : int
        Most nerve regions reported per frame.
    min_confidence : float
        Floor of the calibrated confidence: a nerve below it is not
        reported; a frame whose every candidate lies below it is refused
        with the reason (:func:`pipeline.analysis.analyze_frame`).
    outline : {"network", "refined"}
        ``network``: the border is the network's decision boundary;
        ``refined``: :func:`~pipeline.segmentation.nerve_outline.refine_outline`
        (the ``outline_level`` contour of the nerve margin, and the rim model
        of CONTRACT.md section 4 where a rim is seen when ``outline_rim``).
    outline_level : float
        Nerve-margin level of the refined border where no rim is seen. The
        defaults of the ``outline_*`` settings were chosen on the training
        split of usgra-seg-train, scored out of fold, and the sample-data
        phantoms (``training/fit_nerve_outline.py``, ``training/EXPERIMENTS.md``).
    outline_rim : bool
        Rim model where a rim is seen (refined outline only).
    outline_min_prominence : float
        Rim visibility threshold on a normal, in noise SDs (refined outline only).
    outline_min_rim_share : float
        Smallest share of normals with a rim for the rim model to be used (refined outline only).
    """

    min_region_fraction: float = 0.0015
    min_region_mm2: float = 0.8
    max_nerves: int = 6
    min_confidence: float = 0.5
    outline: str = "refined"
    outline_level: float = 0.7
    outline_rim: bool = True
    outline_min_prominence: float = 3.0
    outline_min_rim_share: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], not {self.min_confidence}")
        if self.outline not in OUTLINES:
            raise ValueError(f"outline must be one of {', '.join(OUTLINES)}, not {self.outline!r}")
        self.outline_parameters()  # validates the outline settings

    def outline_parameters(self) -> OutlineParameters:
        """The refinement settings (:class:`~pipeline.segmentation.nerve_outline.OutlineParameters`)."""
        return OutlineParameters(
            level=self.outline_level,
            rim=self.outline_rim,
            min_prominence=self.outline_min_prominence,
            min_rim_share=self.outline_min_rim_share,
        )

    def as_dict(self) -> dict[str, float | int | str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class LearnedNerveSegmenter:
    """Nerves as the network's connected nerve regions, outlined as ``parameters.outline`` says.

    Parameters
    ----------
    net : NerveNet or path
        The network (default: the shipped model).
    parameters : LearnedNerveParameters, optional
        Default: :class:`LearnedNerveParameters` (the shipped settings, refined outline).
    """

    name = "mskus-learned-nerve"

    def __init__(
        self,
        net: NerveNet | str | Path | None = None,
        parameters: LearnedNerveParameters | None = None,
        *,
        calibrate: bool = True,
    ) -> None:
        self.net = net if isinstance(net, NerveNet) else NerveNet(net or DEFAULT_MODEL_PATH)
        self.settings = parameters or LearnedNerveParameters()
        self.calibration = ConfidenceCalibration.from_metadata(self.net.metadata) if calibrate else ConfidenceCalibration()
        calibration_note = {"confidence": "calibrated on the validation split" if self.calibration.fitted else "raw"}
        self.parameters = _ParameterView(_model_parameters(self.net), self.settings.as_dict(), calibration_note)

    @property
    def min_confidence(self) -> float:
        """Floor of the reported confidence (see :class:`LearnedNerveParameters`)."""
        return self.settings.min_confidence

    def confidence(self, region: LabelRegion) -> float:
        """Calibrated confidence of a nerve region (hit rate of such regions on the validation split)."""
        return self.calibration(region.probability)

    @property
    def version(self) -> str:
        """The model: file stem, version and the first 12 hex digits of the ONNX file's SHA-256."""
        return f"{self.net.path.stem} {self.net.model_version} sha256:{self.net.short_hash}"

    def min_area_px(self, box: PixelBox, mm_per_px: float | None) -> float:
        s = self.settings
        area = s.min_region_fraction * box.width * box.height
        if mm_per_px:
            area = max(area, s.min_region_mm2 / (mm_per_px * mm_per_px))
        return area

    def analyze(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None = None,
        exclude: np.ndarray | None = None,
    ) -> LearnedFrame:
        """Run the network on the tissue region; nerve and vessel regions in crop pixels."""
        crop = Crop(tissue_box)
        roi = crop.apply(gray)
        excluded = crop.apply(exclude) if exclude is not None else None
        prob = self.net.probabilities(_fill_excluded(roi, excluded))
        min_area = self.min_area_px(tissue_box, mm_per_px)
        nerves = label_regions(prob, NERVE, min_area)[: self.settings.max_nerves]
        return LearnedFrame(crop=crop, probabilities=prob, nerves=tuple(nerves), min_area_px=min_area)

    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Every nerve region, best first. See :class:`~pipeline.segmentation.base.NerveSegmenter`."""
        frame = self.analyze(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude)
        roi = frame.crop.apply(gray).astype(np.float32)
        refine = self.settings.outline == "refined" and bool(frame.nerves)
        if refine:
            outline = self.settings.outline_parameters()
            prob = frame.probabilities
            margin = prob[NERVE] - np.delete(prob, NERVE, axis=0).max(axis=0)
            psf = _speckle_fwhm_px(frame.crop.apply(gray)) if outline.rim else None
        out = []
        for region in frame.nerves:
            contour_crop, ridge_crop = region.contour_px, region.contour_px
            if refine:
                refined = refine_outline(
                    roi, margin, region.mask, region.contour_px, outline, mm_per_px=mm_per_px, psf_fwhm_px=psf
                )
                contour_crop, ridge_crop = refined.contour_px, refined.ridge_px
            contour = frame.crop.to_frame(contour_crop)
            out.append(
                NerveSegmentation(
                    contour_px=contour,
                    ridge_px=frame.crop.to_frame(ridge_crop),
                    confidence=self.confidence(region),
                    features=_nan_features(_interior_to_surround(roi, region.mask)),
                )
            )
        out.sort(key=lambda seg: -seg.confidence)
        return out
