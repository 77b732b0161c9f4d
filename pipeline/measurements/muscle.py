"""Muscle thickness and echogenicity on one long-axis B-mode frame (CONTRACT.md section 4).

The boundaries come from :mod:`pipeline.segmentation.muscle_bands` (band
search, pair selection and inner edges; with a ``boundary_finder``, the
aponeurosis network proposes the bands). This module measures between the
inner edges:

1. **Thickness.** Shortest (perpendicular) distance, in mm, from the superficial
   inner edge at the centre column of the tissue region to the deep inner-edge
   curve; also its mean over every column of the central half of the width.
2. **Echogenicity.** Gray statistics over the muscle between the inner edges,
   kept 0.5 mm (perpendicular) from each, over the central 60 % of the width,
   inside the tissue region, minus the excluded (colour) pixels.

Coordinates are frame pixels ``(x, y)`` = (column, row), pixel centres at
integers. Millimetres use ``mm_per_px_x`` along x and ``mm_per_px_y`` along y,
so anisotropic pixels are handled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.measurements.echogenicity import EchogenicityStats, echogenicity_stats
from pipeline.segmentation.muscle_bands.edges import (
    _band_edge,
    _Edge,
    _fit_edge,
    _pair_edges,
)
from pipeline.segmentation.muscle_bands.finder import BoundaryFinder, NoMuscleBoundariesError, describe_boundaries
from pipeline.segmentation.muscle_bands.fits import (
    _AMPLITUDE,
    _tilt_deg,
)
from pipeline.segmentation.muscle_bands.learned import (
    _common_columns,
    _learned_pairs,
)
from pipeline.segmentation.muscle_bands.search import (
    MIN_BAND_SEPARATION_MM,
    _Band,
    _find_bands,
    _rank_pairs,
)

__all__ = [
    "DEEP_BOUNDARY_APONEUROSIS",
    "DEEP_BOUNDARY_BONE",
    "MuscleMeasurement",
    "NoMuscleBoundariesError",
    "ThicknessSite",
    "measure_muscle",
]

DEEP_BOUNDARY_APONEUROSIS = "aponeurosis"
DEEP_BOUNDARY_BONE = "bone surface"

#: Echogenicity ROI: distance kept from each inner edge, and central width fraction.
ROI_MARGIN_MM = 0.5
ROI_WIDTH_FRACTION = 0.6
#: A pixel size outside this range (mm/px) cannot be a B-mode image: size priors
#: then use the nominal pixel size (the caller may pass 1.0 to work in pixels).
_PLAUSIBLE_MM_PER_PX = (0.01, 0.4)
#: Best-ranked band pairs tried before giving up.
MAX_PAIRS_TRIED = 3


SITE_KINDS = ("fraction", "mm_from_left", "mm_from_right", "px_from_left", "px_from_right")


@dataclass(frozen=True)
class ThicknessSite:
    """Where along the tissue region's width the thickness caliper starts.

    Attributes
    ----------
    kind : str
        ``fraction`` (of the tissue region's width, 0 = left edge, 1 = right
        edge; CONTRACT.md section 4 default 0.5, the centre),
        ``mm_from_left`` / ``mm_from_right`` (a distance in mm from either
        side of the tissue region; needs a calibration), or ``px_from_left`` /
        ``px_from_right`` (pixels, for uncalibrated research sets).
    value : float
    """

    kind: str = "fraction"
    value: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"thickness site kind must be one of {', '.join(SITE_KINDS)}, not {self.kind!r}")
        if not math.isfinite(self.value) or self.value < 0 or (self.kind == "fraction" and self.value > 1):
            raise ValueError(f"thickness site {self.kind} must be a finite number >= 0 (<= 1 for a fraction), not {self.value}")

    @classmethod
    def from_mapping(cls, data: object) -> ThicknessSite:
        """From a rules-file mapping with one key, e.g. ``{fraction: 0.3}`` or ``{mm_from_left: 20}``."""
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"thickness_site must be a mapping with one of {', '.join(SITE_KINDS)}")
        ((kind, value),) = data.items()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"thickness_site {kind}: expected a number, got {value!r}")
        return cls(str(kind), float(value))

    @property
    def is_default(self) -> bool:
        return self.kind == "fraction" and self.value == 0.5

    def column(self, cols: int, mm_per_px_x: float | None) -> float:
        """The caliper's crop column for a tissue region ``cols`` pixels wide."""
        if self.kind == "fraction":
            x = self.value * (cols - 1)
        elif self.kind.startswith("mm_"):
            if mm_per_px_x is None:
                raise NoMuscleBoundariesError(f"thickness site {self.kind} {self.value:g} mm needs a calibrated frame")
            px = self.value / mm_per_px_x
            x = px if self.kind == "mm_from_left" else cols - 1 - px
        else:
            x = self.value if self.kind == "px_from_left" else cols - 1 - self.value
        if not 0 <= x <= cols - 1:
            raise NoMuscleBoundariesError(f"thickness site {self.kind} {self.value:g} lies outside the tissue region")
        return float(x)

    def describe(self) -> str:
        unit = {"fraction": "of the width", "mm_from_left": "mm from the left", "mm_from_right": "mm from the right",
                "px_from_left": "px from the left", "px_from_right": "px from the right"}[self.kind]
        return f"{self.value:g} {unit}"


@dataclass(frozen=True)
class MuscleMeasurement:
    """Muscle thickness and echogenicity of one frame.

    All coordinates are frame pixels ``(x, y)`` = (column, row). mm values are
    ``None`` when the frame is uncalibrated; pixel values are always given.

    Attributes
    ----------
    thickness_px : float
        Length in pixels of the centre caliper: from the superficial inner edge
        at the tissue region's centre column to the nearest point of the deep
        inner edge (the perpendicular, found in physical units so anisotropic
        pixels are handled; the length is ``hypot(dx, dy)`` in pixels).
    thickness_mm : float or None
        The same caliper in mm.
    thickness_mean_central_half_px, thickness_mean_central_half_mm : float, float or None
        Mean of that perpendicular distance over every pixel column of the
        central half of the tissue region's width.
    vertical_gap_px : float
        Vertical distance between the inner edges at the centre column, pixels.
    caliper_px : tuple of two (x, y) tuples
        Caliper endpoints: on the superficial inner edge, then on the deep one.
    superficial_edge_px, deep_edge_px : ndarray (N, 2)
        Points of the fitted inner edges across the tissue region's width
        (one per pixel column).
    superficial_outer_edge_px : ndarray (N, 2)
        Points of the upper (outer) edge of the superficial fascia.
    deep_boundary : str
        ``"aponeurosis"`` or ``"bone surface"`` (a bright band casting an
        acoustic shadow).
    tilt_deg, deep_tilt_deg : float
        Physical tilt of the superficial and deep inner edges at the centre,
        degrees, positive when the edge goes deeper to the right.
    subcutaneous_thickness_px : float
        Vertical distance from the top of the tissue region to the outer edge of
        the superficial fascia at the centre column, pixels.
    subcutaneous_thickness_mm : float or None
        The same in mm; ``None`` when uncalibrated or not determinable.
    roi_polygon_px : ndarray (N, 2)
        Closed outline of the echogenicity ROI through the centres of its
        boundary pixels (first point repeated at the end).
    roi_mask : ndarray of bool, frame shape
        The echogenicity ROI: columns in the central 60 % of the tissue region,
        rows at least 0.5 mm (perpendicular) inside both inner edges, inside the
        tissue region.
    echogenicity : EchogenicityStats
        Gray-level mean, SD and median over ``roi_mask`` minus the excluded pixels.
    confidence : float
        0-1: band contrast, continuity across the width and fit residuals.
    mm_per_px_x, mm_per_px_y : float or None
        The calibration used for the mm values.
    boundaries : str
        How the boundary bands were chosen: ``"learned <model version>"``
        (the aponeurosis network proposed them, the edge tracer placed the
        inner edges) or ``"classical band search"`` (with the reason when it
        stands in for a missing model).
    site : ThicknessSite
        Where the caliper was placed.
    layer : int
        Which muscle layer from the skin was measured (1: the most superficial).
    boundary_agreement : float or None
        Learned boundaries only: 1 minus the relative difference between the
        gap of the traced inner edges and the gap between the network's band
        borders at the caliper (1 = they agree); ``None`` otherwise.
    """

    thickness_px: float
    thickness_mm: float | None
    thickness_mean_central_half_px: float
    thickness_mean_central_half_mm: float | None
    vertical_gap_px: float
    caliper_px: tuple[tuple[float, float], tuple[float, float]]
    superficial_edge_px: np.ndarray = field(repr=False, compare=False)
    deep_edge_px: np.ndarray = field(repr=False, compare=False)
    superficial_outer_edge_px: np.ndarray = field(repr=False, compare=False)
    deep_boundary: str = DEEP_BOUNDARY_APONEUROSIS
    tilt_deg: float = 0.0
    deep_tilt_deg: float = 0.0
    subcutaneous_thickness_px: float | None = None
    subcutaneous_thickness_mm: float | None = None
    roi_polygon_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False, compare=False)
    roi_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), repr=False, compare=False)
    echogenicity: EchogenicityStats | None = None
    confidence: float = 0.0
    mm_per_px_x: float | None = None
    mm_per_px_y: float | None = None
    boundaries: str = "classical band search"
    site: ThicknessSite = field(default_factory=ThicknessSite)
    boundary_agreement: float | None = None
    layer: int = 1


def _perpendicular(xs: np.ndarray, ys: np.ndarray, deep: np.ndarray, x_lo: float, x_hi: float,
                   sx: float, sy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest physical distance (mm) from points (xs, ys) to the deep curve.

    Returns (distance_mm, x_on_deep, y_on_deep). The deep quadratic is sampled
    over [x_lo, x_hi] (crop px) for the global minimum, which Newton steps on
    the squared physical distance then refine.
    """
    xd = np.linspace(x_lo, x_hi, 385)
    yd = np.polyval(deep, xd)
    d2 = ((xd[None, :] - xs[:, None]) * sx) ** 2 + ((yd[None, :] - ys[:, None]) * sy) ** 2
    x = xd[np.argmin(d2, axis=1)]
    d1c, d2c = np.polyder(deep), np.polyder(deep, 2)
    for _ in range(6):
        y, dy, ddy = np.polyval(deep, x), np.polyval(d1c, x), np.polyval(d2c, x)
        g = (x - xs) * sx * sx + (y - ys) * dy * sy * sy  # half the derivative of d^2
        h = sx * sx + (dy * dy + (y - ys) * ddy) * sy * sy
        x = np.where(h > 0, x - g / np.where(h > 0, h, 1.0), x)
        x = np.clip(x, x_lo, x_hi)
    y = np.polyval(deep, x)
    return np.sqrt(((x - xs) * sx) ** 2 + ((y - ys) * sy) ** 2), x, y


def _roi(shape: tuple[int, int], crop: Crop, sup: np.ndarray, deep: np.ndarray, sx: float, sy: float,
         margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Echogenicity ROI mask (frame shape) and its closed outline (frame px)."""
    rows, cols = crop.shape
    x = np.arange(cols, dtype=np.float64)
    rel = x + 0.5
    f = (1.0 - ROI_WIDTH_FRACTION) / 2.0
    sel = (rel >= f * cols) & (rel <= (1.0 - f) * cols)
    xs = x[sel]
    # Physical slopes: the 0.5 mm is measured perpendicular to the local edge.
    slope_s = np.polyval(np.polyder(sup), xs) * sy / sx
    slope_d = np.polyval(np.polyder(deep), xs) * sy / sx
    top = np.polyval(sup, xs) + margin_mm * np.sqrt(1 + slope_s**2) / sy
    bot = np.polyval(deep, xs) - margin_mm * np.sqrt(1 + slope_d**2) / sy
    top = np.maximum(top, 0.0)
    bot = np.minimum(bot, rows - 1.0)
    yy = np.arange(rows, dtype=np.float64)[:, None]
    m = np.zeros((rows, cols), dtype=bool)
    m[:, sel] = (yy >= top[None, :]) & (yy <= bot[None, :])
    mask = crop.mask_to_frame(m, shape)
    ok = bot >= top
    poly = np.concatenate([np.stack([xs[ok], top[ok]], 1), np.stack([xs[ok], bot[ok]], 1)[::-1]])
    if len(poly):
        poly = np.vstack([poly, poly[:1]])  # closed: the first point repeated
    return mask, crop.to_frame(poly)


def _prior_scale(mm: float | None, nominal: float) -> float:
    """Pixel size (mm) for the size priors: the calibration when plausible for B-mode, else nominal."""
    if mm is None or not (_PLAUSIBLE_MM_PER_PX[0] <= mm <= _PLAUSIBLE_MM_PER_PX[1]):
        return float(nominal)
    return float(mm)


def _network_agreement(sup: _Band, deep: _Band, sup_fit: np.ndarray, deep_fit: np.ndarray, x: float) -> float | None:
    """1 - |gap between the traced inner edges - gap between the network's band borders| / traced gap, at x.

    ``None`` when a boundary is not a network band (a bone surface, a half-missed band).
    """
    if sup.layer is None or deep.layer is None:
        return None
    traced = float(np.polyval(deep_fit, x) - np.polyval(sup_fit, x))
    network = float(np.polyval(deep.layer.top_coef, x) - np.polyval(sup.layer.bottom_coef, x))
    if traced <= 0:
        return 0.0
    return float(1.0 - abs(traced - network) / traced)


def _learned_confidence(classical: float, layers: list[Any], p0: tuple[float, float],
                        p1: tuple[float, float], cols: int) -> float:
    """Edge evidence times the network's: band probability and whether both bands reach the caliper."""
    margin = 0.05 * cols
    probs = []
    reach = 1.0
    for point in (p0, p1):
        near = [b for b in layers if abs(float(b.y(point[0])) - point[1]) <= 0.25 * abs(p1[1] - p0[1]) + 5]
        if near:
            best = max(near, key=lambda b: b.probability)
            probs.append(best.probability)
            if not best.covers(point[0], margin):
                reach = 0.5
        else:
            probs.append(0.5)  # a classical deep band the network did not mark (bone)
    return float(np.clip(classical * min(probs) * reach, 0.0, 1.0))


def measure_muscle(
    gray: np.ndarray,
    tissue_box: PixelBox,
    *,
    mm_per_px_x: float | None,
    mm_per_px_y: float | None,
    exclude: np.ndarray | None = None,
    nominal_mm_per_px: float = 0.1,
    boundary_finder: BoundaryFinder | None = None,
    site: ThicknessSite | None = None,
    layer: int = 1,
) -> MuscleMeasurement:
    """Measure muscle thickness and echogenicity on one long-axis frame.

    Parameters
    ----------
    gray : ndarray of uint8, shape (rows, columns)
        The whole frame, 8-bit luma.
    tissue_box : PixelBox
        The B-mode tissue region (inclusive bounds); nothing outside it is used.
    mm_per_px_x, mm_per_px_y : float or None
        Pixel size in mm along columns and rows; ``None`` when the frame is
        uncalibrated (then every mm value of the result is ``None``).
    exclude : ndarray of bool, frame shape, optional
        Pixels left out of the echogenicity (colour Doppler, annotations).
    nominal_mm_per_px : float
        Pixel size assumed for the size priors (band widths, 3 mm minimum
        separation, search windows) and for the 0.5 mm ROI margin when the frame
        is uncalibrated. Also used for the priors when the given pixel size is
        implausible for B-mode (outside 0.01-0.4 mm/px, e.g. 1.0 to get pixels).
    boundary_finder : BoundaryFinder, optional
        Proposes the boundary bands (the learned aponeurosis finder): the
        shallowest two bands under the skin zone bound the muscle measured
        (the first muscle under the subcutaneous tissue); the inner edges are
        then placed on the image. Without it, the classical band search.
    site : ThicknessSite, optional
        Where the caliper starts (default: the centre of the width).
    layer : int
        Which muscle layer from the skin (1, the default: the most superficial;
        2: the muscle under it, e.g. vastus intermedius under rectus femoris).
        Learned boundaries only: layer ``k`` lies between the ``k``-th and
        ``k+1``-th boundary bands; refused when the frame shows fewer.

    Returns
    -------
    MuscleMeasurement
        Frame-pixel geometry and, when calibrated, mm values.

    Raises
    ------
    NoMuscleBoundariesError
        No superficial fascia and deep aponeurosis / bone surface pair can be
        found (the reason says what is missing). No value is invented.
    ValueError
        ``gray`` is not a 2-D uint8 array or the box does not fit it.
    """
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D gray frame, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        raise ValueError(f"expected uint8 gray values, got {gray.dtype}")
    calibrated = mm_per_px_x is not None and mm_per_px_y is not None
    if (mm_per_px_x is None) != (mm_per_px_y is None):
        raise ValueError("give both mm_per_px_x and mm_per_px_y, or neither")
    box = tissue_box.clipped(*gray.shape)
    crop = Crop(box)
    sub = crop.apply(gray)
    rows, cols = sub.shape
    # Size priors (mm -> px) and the metric used for perpendiculars.
    psx = _prior_scale(mm_per_px_x, nominal_mm_per_px)
    psy = _prior_scale(mm_per_px_y, nominal_mm_per_px)
    mx = float(cast(float, mm_per_px_x)) if calibrated else float(nominal_mm_per_px)
    my = float(cast(float, mm_per_px_y)) if calibrated else float(nominal_mm_per_px)
    if rows * psy < 2 * MIN_BAND_SEPARATION_MM or cols * psx < 5.0:
        raise NoMuscleBoundariesError(f"tissue region too small for a muscle measurement ({cols}x{rows} px)")

    site = site or ThicknessSite()
    xc = site.column(cols, mm_per_px_x if calibrated else None)
    gray_f = sub.astype(np.float32)
    layer_bands: list[Any] | None = None
    found = boundary_finder.find(gray, box, exclude) if boundary_finder is not None else None
    if found is not None:
        layer_bands = list(found.bands)
        pairs = _learned_pairs(layer_bands, found.probability, gray_f, psx, psy, rows, cols,
                               min_superficial_extent=float(getattr(found, "min_superficial_extent_fraction", 0.0)),
                               layer=layer)
    else:
        if layer != 1:
            raise NoMuscleBoundariesError(f"muscle layer {layer} needs the learned boundary finder")
        bands, _noise = _find_bands(gray_f, psx, psy)
        pairs = _rank_pairs(bands, psx, psy, rows, cols)
    amp = _AMPLITUDE[sub]
    error: NoMuscleBoundariesError | None = None
    for sup_band, deep_band in pairs[:MAX_PAIRS_TRIED]:
        try:
            pe = _pair_edges(gray_f, amp, sup_band, deep_band, psx, psy, _common_columns(sup_band, deep_band))
            break
        except NoMuscleBoundariesError as exc:
            error = error or exc
    else:
        assert error is not None
        raise error
    sup_fit, deep_fit = pe.sup_fit, pe.deep_fit
    yc_s, yc_d = pe.sup_centre, pe.deep_centre
    # Bone: a very bright deep band with an acoustic shadow below it.
    deep_boundary = _classify_deep(sub, yc_d, pe.e_deep, psy)
    if layer_bands is not None and not deep_band.network_support and deep_boundary != DEEP_BOUNDARY_BONE:
        # The network was not taught bone; any other deep band it did not mark is likely a fascicle.
        raise NoMuscleBoundariesError(
            "muscle boundaries not found with confidence: no deep aponeurosis band under the superficial one"
        )
    x = np.arange(cols, dtype=np.float64)
    ys = np.polyval(sup_fit, x)
    yd = np.polyval(deep_fit, x)

    span = cols
    dist_c, xdc, ydc = _perpendicular(np.array([xc]), np.array([np.polyval(sup_fit, xc)]), deep_fit,
                                      -span, 2 * span, mx, my)
    rel = x + 0.5
    ch = (rel >= 0.25 * cols) & (rel <= 0.75 * cols)
    dist_h, xdh, ydh = _perpendicular(x[ch], ys[ch], deep_fit, -span, 2 * span, mx, my)
    p0 = (float(xc), float(np.polyval(sup_fit, xc)))
    p1 = (float(xdc[0]), float(ydc[0]))
    thickness_px = float(math.hypot(p1[0] - p0[0], p1[1] - p0[1]))
    mean_px = float(np.mean(np.hypot(xdh - x[ch], ydh - ys[ch])))
    # Outer (upper) edge of the superficial fascia -> subcutaneous thickness.
    e_out = _band_edge(gray_f, amp, yc_s, -1, np.maximum(yc_s, 1.0), psx, psy)
    out_fit, out_frac, _ = _fit_edge(e_out, cols, psy)
    sub_px = None
    outer_pts = np.zeros((0, 2))
    if np.all(np.isfinite(out_fit)) and out_frac > 0.3:
        yo = np.polyval(out_fit, x)
        y_out_c = float(np.polyval(out_fit, xc))
        if 0.0 <= y_out_c < p0[1]:
            sub_px = y_out_c  # rows from the top row of the tissue region (pixel centres)
            outer_pts = crop.to_frame(np.stack([x, yo], 1))

    margin = ROI_MARGIN_MM
    roi_mask, roi_poly = _roi(gray.shape, crop, sup_fit, deep_fit, mx, my, margin)
    if not roi_mask.any():
        raise NoMuscleBoundariesError("muscle too thin for an echogenicity ROI between the fasciae")
    try:
        stats = echogenicity_stats(gray, roi_mask, exclude=exclude)
    except ValueError as exc:
        raise NoMuscleBoundariesError(f"echogenicity ROI is empty: {exc}") from None

    conf = _confidence(pe.e_sup, pe.e_deep, *pe.fractions, *pe.rms, psy)
    agreement = None
    if layer_bands is not None:
        conf = _learned_confidence(conf, layer_bands, p0, p1, cols)
        agreement = _network_agreement(sup_band, deep_band, sup_fit, deep_fit, xc)
    to_frame = crop.to_frame
    c0 = to_frame([p0])[0]
    c1 = to_frame([p1])[0]
    return MuscleMeasurement(
        thickness_px=thickness_px,
        thickness_mm=float(dist_c[0]) if calibrated else None,
        thickness_mean_central_half_px=mean_px,
        thickness_mean_central_half_mm=float(np.mean(dist_h)) if calibrated else None,
        vertical_gap_px=float(np.polyval(deep_fit, xc) - np.polyval(sup_fit, xc)),
        caliper_px=((float(c0[0]), float(c0[1])), (float(c1[0]), float(c1[1]))),
        superficial_edge_px=to_frame(np.stack([x, ys], 1)),
        deep_edge_px=to_frame(np.stack([x, yd], 1)),
        superficial_outer_edge_px=outer_pts,
        deep_boundary=deep_boundary,
        tilt_deg=_tilt_deg(sup_fit, xc, mx, my),
        deep_tilt_deg=_tilt_deg(deep_fit, xc, mx, my),
        subcutaneous_thickness_px=sub_px,
        subcutaneous_thickness_mm=(sub_px * my) if (calibrated and sub_px is not None) else None,
        roi_polygon_px=roi_poly,
        roi_mask=roi_mask,
        echogenicity=stats,
        confidence=conf,
        mm_per_px_x=float(cast(float, mm_per_px_x)) if calibrated else None,
        mm_per_px_y=float(cast(float, mm_per_px_y)) if calibrated else None,
        boundaries=describe_boundaries(boundary_finder),
        site=site,
        boundary_agreement=agreement,
        layer=layer,
    )


def _classify_deep(sub: np.ndarray, centre: np.ndarray, edge: _Edge, sy: float) -> str:
    """``"bone surface"`` when the deep band casts an acoustic shadow, else ``"aponeurosis"``.

    A shadow is a region 1.5-6 mm below the band centre whose mean gray value is
    under a third of the muscle's just above the band (or below the noise floor),
    under a band at least 15 dB brighter than the muscle.
    """
    rows, cols = sub.shape
    x = np.arange(cols)
    c = np.rint(centre).astype(np.int64)
    yb = c[None, :] + np.arange(int(math.ceil(1.5 / sy)), int(math.ceil(6.0 / sy)))[:, None]
    ya = c[None, :] - np.arange(int(math.ceil(1.0 / sy)), int(math.ceil(4.0 / sy)))[:, None]
    okb = (yb >= 0) & (yb < rows)
    oka = (ya >= 0) & (ya < rows)
    if okb.mean() < 0.5 or oka.mean() < 0.5:
        return DEEP_BOUNDARY_APONEUROSIS
    below = float(np.mean(sub[np.clip(yb, 0, rows - 1), x[None, :]][okb]))
    above = float(np.mean(sub[np.clip(ya, 0, rows - 1), x[None, :]][oka]))
    bright = np.isfinite(edge.level_ratio) and edge.level_ratio >= 10 ** (15.0 / 20.0)
    if bright and (below < max(above / 3.0, 5.0)):
        return DEEP_BOUNDARY_BONE
    return DEEP_BOUNDARY_APONEUROSIS


def _confidence(e_sup: _Edge, e_deep: _Edge, f_sup: float, f_deep: float, r_sup: float, r_deep: float,
                sy: float) -> float:
    """0-1 from band contrast (dB), edge coverage and fit residuals."""
    def contrast_term(e: _Edge) -> float:
        db = 20.0 * math.log10(max(e.level_ratio, 1.0)) if np.isfinite(e.level_ratio) else 0.0
        return min(1.0, db / 12.0)

    def resid_term(r: float) -> float:
        return float(np.clip(1.0 - (r * sy) / 0.6, 0.0, 1.0)) if np.isfinite(r) else 0.0

    c = min(contrast_term(e_sup), contrast_term(e_deep))
    cov = min(f_sup, f_deep)
    res = min(resid_term(r_sup), resid_term(r_deep))
    return float(np.clip(c * (0.5 + 0.5 * cov) * (0.5 + 0.5 * res), 0.0, 1.0))
