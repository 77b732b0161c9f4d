"""Learned proposals, border by the classical rim tracer: the auto nerve segmenter.

:class:`AutoNerveSegmenter` uses each learned nerve region
(:mod:`pipeline.segmentation.learned_nerve`) as a proposal and lets the
classical rim tracer place the border (CONTRACT.md section 4: the inner border
of the epineurial rim, half the blur-corrected rim width inside the rim's
ridge). Regions the network calls vessel are never reported.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.geometry import dice_coefficient, polygon_area, polygon_mask
from pipeline.segmentation.base import NerveSegmentation
from pipeline.segmentation.classical_nerve import ClassicalNerveParameters, ClassicalNerveSegmenter
from pipeline.segmentation.learned_nerve import LabelRegion, LearnedNerveSegmenter, _interior_to_surround, _nan_features
from pipeline.segmentation.nerve_model import NERVE, NerveNet, _model_parameters, _ParameterView

__all__ = ["AutoNerveParameters", "AutoNerveSegmenter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoNerveParameters:
    """Settings of the learned-proposal / classical-border segmenter.

    Attributes
    ----------
    search_box_factor : float
        Half-size of the box the tracer works on around a proposal, in
        equivalent radii; 0 (default): the whole tissue region, so the blur
        and noise are estimated exactly as the classical segmenter does.
    radius_range : (float, float)
        Rim radii the classical tracer may look at, relative to the proposal's
        equivalent radius.
    uncalibrated_radius_mm : float
        Working scale on uncalibrated frames: the proposal's equivalent radius
        is taken to be this many mm for the tracer's size priors (no mm value
        is derived from it).
    min_agreement : float
        Smallest Dice between the traced contour and the proposal for the
        traced border to be used ...
    min_inside, min_area_ratio : float
        ... or: at least ``min_inside`` of the traced area inside the
        proposal and at least ``min_area_ratio`` of the proposal's area (a
        generous proposal around a well-traced rim).
    keep_unrefined : bool
        Report a proposal whose border could not be traced with the
        network's outline (confidence halved); otherwise drop it.
    max_vessel_overlap : float
        A contour with more than this share of its area on pixels the network
        calls vessel is not reported.
    classical_fallback : bool
        When the network finds no nerve, report what the classical
        segmenter finds on the whole tissue region (subject to the vessel
        check).
    """

    search_box_factor: float = 0.0
    radius_range: tuple[float, float] = (0.6, 1.5)
    uncalibrated_radius_mm: float = 2.0
    min_agreement: float = 0.6
    min_inside: float = 0.85
    min_area_ratio: float = 0.25
    keep_unrefined: bool = True
    max_vessel_overlap: float = 0.2
    classical_fallback: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _ProposalTracer(ClassicalNerveSegmenter):
    """The classical segmenter with its ring-filter candidates replaced by one proposal ``(x, y, r)``."""

    proposal: tuple[float, float, float] = (0.0, 0.0, 0.0)
    used = False

    def _candidates(self, smooth: np.ndarray, scale: float) -> list[tuple[float, float, float]]:
        self.used = True
        return [self.proposal]


class AutoNerveSegmenter:
    """Learned proposals, border by the classical rim tracer (CONTRACT.md section 4).

    For each nerve region of the network, the classical segmenter's rim
    tracing (dynamic-programming ridge, blur-corrected rim width, border half
    a rim width inside the ridge) runs from the region's centroid and
    equivalent radius, on a box around the region, in place of its
    ring-filter candidates; its contour is used when it agrees with the
    region. Nerve contours lying on what the network calls vessel are
    dropped, so a vessel is never reported as a nerve.

    Parameters
    ----------
    learned : LearnedNerveSegmenter or NerveNet or path
    parameters : AutoNerveParameters, optional
    classical_parameters : ClassicalNerveParameters, optional
        Base parameters of the classical tracer.
    """

    name = "mskus-auto-nerve"

    def __init__(
        self,
        learned: LearnedNerveSegmenter | NerveNet | str | Path | None = None,
        parameters: AutoNerveParameters | None = None,
        classical_parameters: ClassicalNerveParameters | None = None,
    ) -> None:
        self.learned = learned if isinstance(learned, LearnedNerveSegmenter) else LearnedNerveSegmenter(learned)
        self.settings = parameters or AutoNerveParameters()
        self.classical_parameters = classical_parameters or ClassicalNerveParameters()
        self.classical = ClassicalNerveSegmenter(self.classical_parameters)
        classical_items = {f"classical.{k}": v for k, v in self.classical_parameters.as_dict().items()}
        self.parameters = _ParameterView(
            _model_parameters(self.learned.net),
            # The outline settings of the learned segmenter do not apply: auto places its own border.
            {k: v for k, v in self.learned.settings.as_dict().items() if not k.startswith("outline")},
            {f"auto.{k}": v for k, v in self.settings.as_dict().items()},
            classical_items,
        )
        self.last_stats: dict[str, int] = {}

    @property
    def version(self) -> str:
        return self.learned.version

    @property
    def net(self) -> NerveNet:
        return self.learned.net

    @property
    def min_confidence(self) -> float:
        return self.learned.min_confidence

    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Refined nerve contours, best first. See :class:`~pipeline.segmentation.base.NerveSegmenter`."""
        s = self.settings
        frame = self.learned.analyze(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude)
        crop = frame.crop
        vessel = frame.vessel_mask
        roi = crop.apply(gray).astype(np.float32)
        stats = {"proposals": len(frame.nerves), "refined": 0, "unrefined": 0, "vessel_dropped": 0, "fallback": 0}
        out: list[NerveSegmentation] = []
        taken: list[np.ndarray] = []

        def accept(seg: NerveSegmentation, mask: np.ndarray) -> bool:
            if mask.sum() == 0:
                return False
            if float((mask & vessel).sum()) / float(mask.sum()) > s.max_vessel_overlap:
                stats["vessel_dropped"] += 1
                return False
            if any(dice_coefficient(mask, other) > 0.3 for other in taken):
                return False
            taken.append(mask)
            out.append(seg)
            return True

        for region in frame.nerves:
            refined = self._refine(gray, tissue_box, region, crop, mm_per_px, exclude)
            if refined is not None:
                seg_crop_mask, seg = refined
                if accept(seg, seg_crop_mask):
                    stats["refined"] += 1
                continue
            if not s.keep_unrefined:
                continue
            contour = crop.to_frame(region.contour_px)
            seg = NerveSegmentation(
                contour_px=contour,
                ridge_px=contour.copy(),
                confidence=0.5 * self.learned.confidence(region),
                features=_nan_features(_interior_to_surround(roi, region.mask)),
            )
            if accept(seg, region.mask):
                stats["unrefined"] += 1
        if not out and s.classical_fallback:
            for seg in self.classical.segment(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude):
                mask = polygon_mask(crop.from_frame(seg.contour_px), roi.shape)
                nerve_prob = float(frame.probabilities[NERVE][mask].mean()) if mask.any() else 0.0
                scaled = dataclasses.replace(seg, confidence=float(seg.confidence) * 0.5 * (1.0 + nerve_prob))
                if accept(scaled, mask):
                    stats["fallback"] += 1
        self.last_stats = stats
        return out

    def _refine(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        region: LabelRegion,
        crop: Crop,
        mm_per_px: float | None,
        exclude: np.ndarray | None,
    ) -> tuple[np.ndarray, NerveSegmentation] | None:
        """Classical rim trace around one proposal; ``None`` when it fails or disagrees."""
        s = self.settings
        r_eq = region.equivalent_radius_px
        cx, cy = crop.to_frame(np.array([region.centroid]))[0]
        ys, xs = np.nonzero(region.mask)
        half_extent = 0.5 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        if s.search_box_factor > 0:
            half = max(s.search_box_factor * r_eq, 1.25 * half_extent + 0.6 * r_eq)
            sub = PixelBox(
                max(tissue_box.x0, int(math.floor(cx - half))),
                max(tissue_box.y0, int(math.floor(cy - half))),
                min(tissue_box.x1, int(math.ceil(cx + half))),
                min(tissue_box.y1, int(math.ceil(cy + half))),
            )
        else:  # the whole tissue region: blur and noise estimated as the classical segmenter does
            sub = tissue_box
        if sub.width < 16 or sub.height < 16:
            return None
        scale = mm_per_px if mm_per_px else s.uncalibrated_radius_mm / max(r_eq, 1.0)
        r_mm = r_eq * scale
        try:
            params = dataclasses.replace(
                self.classical_parameters,
                min_radius_mm=s.radius_range[0] * r_mm,
                max_radius_mm=s.radius_range[1] * r_mm,
            )
        except (TypeError, ValueError):  # parameters renamed: keep the base ones
            params = self.classical_parameters
        tracer = _ProposalTracer(params, keep_rejected=True)
        # The rim lies just outside the nerve: start the ridge search at the region's radius.
        tracer.proposal = (cx - sub.x0, cy - sub.y0, r_eq)
        try:
            found = tracer.segment(gray, sub, mm_per_px=scale, exclude=exclude)
        except (ValueError, cv2.error, IndexError, ZeroDivisionError) as exc:
            logger.debug("classical refinement failed: %s", exc)
            return None
        if not tracer.used:
            logger.warning("the classical segmenter no longer takes proposals: learned contours used unrefined")
            return None
        if not found:
            return None
        seg = found[0]
        contour_crop = crop.from_frame(seg.contour_px)
        if polygon_area(contour_crop) < 4:
            return None
        mask = polygon_mask(contour_crop, region.mask.shape)
        area = float(mask.sum())
        inside = float((mask & region.mask).sum()) / max(area, 1.0)
        agrees = dice_coefficient(mask, region.mask) >= s.min_agreement or (
            inside >= s.min_inside and area >= s.min_area_ratio * region.area_px
        )
        if not agrees:
            return None
        return mask, dataclasses.replace(seg, confidence=self.learned.confidence(region))
