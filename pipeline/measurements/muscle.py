"""Muscle thickness and echogenicity on one long-axis B-mode frame (CONTRACT.md section 4).

Classical image analysis (NumPy / OpenCV / SciPy), no learned model, no loop over
pixels:

1. **Band search.** Fasciae, aponeuroses and bone surfaces are long, continuous,
   nearly horizontal bright bands. The tissue region is cut into vertical strips
   about 2 mm wide; each strip's mean gray profile goes through a
   scale-normalised ridge detector (negative second derivative of a Gaussian,
   sigma 0.3, 0.6 and 1 mm). For every tilt from -12 to +12 degrees the strip
   responses are sheared onto a common line and combined with a low quantile
   across strips, so that only a band seen over most of the width scores; short
   or oblique structures (fascicle lines, subcutaneous septa) score low. The best
   candidates are then followed strip by strip, fitted with a robust quadratic
   (bands may be curved) and re-scored along that curve.
2. **Pair selection.** Pairs of candidates at least 3 mm apart are scored by the
   geometric mean of their scores, minus half the strongest band *parallel* to
   them lying between them (a muscle holds no band like its own fasciae), times a
   separation prior ``sep / (sep + 8 mm)``. The layer directly above the best
   pair wins when it scores at least 80 % of it: the muscle measured is the first
   one under the skin (rectus femoris over vastus intermedius, gastrocnemius over
   soleus). A boundary band must be at least 6 dB brighter than the muscle next
   to it, otherwise the next pair is tried; then the frame is refused. A deep
   band that is very bright with an acoustic shadow under it is reported as
   ``"bone surface"``.
3. **Inner edges.** Each band is straightened along its fitted curve and
   averaged over 2 mm laterally. Per column, the band's final fall towards the
   muscle is found on the gray value: the point after which the profile stays
   below half way between the band peak and the muscle level (short dips inside a
   speckled band do not count, nor do fainter shoulders of a layered band). The
   edge is then placed at the steepest descent of the **linear echo amplitude**
   within 0.3 mm of that point (gray values decompressed with an assumed 50 dB
   dynamic range). Blur and log compression make a bright band look wider: the
   half-maximum of the displayed (log) image lies outside the true boundary, by
   more the brighter the band, whereas a blurred step in amplitude is steepest at
   the boundary itself, whatever its contrast. The per-column edges are fitted
   with a robust quadratic. On the synthetic phantoms (pixel sizes 0.05-0.13 mm,
   tilts to 10 degrees, bone, curvature) the residual bias is below 0.01 mm per
   edge.
4. **Thickness.** Shortest (perpendicular) distance, in mm, from the superficial
   inner edge at the centre column of the tissue region to the deep inner-edge
   curve; also its mean over every column of the central half of the width.
5. **Echogenicity.** Gray statistics over the muscle between the inner edges,
   kept 0.5 mm (perpendicular) from each, over the central 60 % of the width,
   inside the tissue region, minus the excluded (colour) pixels.

**Learned boundaries** (``boundary_finder``, the shipped default): the
aponeurosis network (:mod:`pipeline.segmentation.aponeurosis`) replaces steps 1
and 2. Its shallowest long band and the next one at least 3 mm deeper bound the
muscle; each follows the band search's candidate on the same band, and step 3
places the inner edges (only over the columns both bands were seen in, when a
band has no candidate). Refused: no band; one band over something other than a
bone surface; a strong parallel band between the two that the network half
marks (ambiguous layer).

Coordinates are frame pixels ``(x, y)`` = (column, row), pixel centres at
integers. Millimetres use ``mm_per_px_x`` along x and ``mm_per_px_y`` along y,
so anisotropic pixels are handled.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d
from scipy.signal import find_peaks

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.errors import MskusInputError
from pipeline.measurements.echogenicity import EchogenicityStats, echogenicity_stats

__all__ = [
    "BoundaryFinder",
    "ClassicalBandSearch",
    "DEEP_BOUNDARY_APONEUROSIS",
    "DEEP_BOUNDARY_BONE",
    "MuscleMeasurement",
    "NoMuscleBoundariesError",
    "ThicknessSite",
    "describe_boundaries",
    "measure_muscle",
]

DEEP_BOUNDARY_APONEUROSIS = "aponeurosis"
DEEP_BOUNDARY_BONE = "bone surface"

#: Log-compression range assumed to turn gray values back into echo amplitude.
ASSUMED_DYNAMIC_RANGE_DB = 50.0
#: Tilts searched for the fasciae, degrees (physical, x and y in mm).
MAX_TILT_DEG = 12.0
TILT_STEP_DEG = 1.0
#: Smallest accepted distance between the two bands (centre to centre), mm.
MIN_BAND_SEPARATION_MM = 3.0
#: Bands whose centre lies this close to the top of the tissue region are the skin line.
SKIN_ZONE_MM = 1.5
#: Echogenicity ROI: distance kept from each inner edge, and central width fraction.
ROI_MARGIN_MM = 0.5
ROI_WIDTH_FRACTION = 0.6
#: A pixel size outside this range (mm/px) cannot be a B-mode image: size priors
#: then use the nominal pixel size (the caller may pass 1.0 to work in pixels).
_PLAUSIBLE_MM_PER_PX = (0.01, 0.4)
#: Band candidates weaker than this (ridge response / speckle noise) are ignored.
MIN_BAND_Z = 2.0
#: A boundary band must be at least this much brighter than the muscle next to it.
MIN_BAND_CONTRAST_DB = 6.0
#: Best-ranked band pairs tried before giving up.
MAX_PAIRS_TRIED = 3
#: Candidates followed and re-scored along a fitted curve.
MAX_CANDIDATES = 14
#: Ridge detector scales (Gaussian sigma, mm).
RIDGE_SCALES_MM = (0.3, 0.6, 1.0)
#: Weight of the strongest parallel band between a pair, subtracted from its score.
BETWEEN_PENALTY = 0.5
#: Pairs scoring at least this share of the best one compete on depth (shallowest wins).
SHALLOW_PAIR_TOLERANCE = 0.8
#: Separation prior of the pair score: sep / (sep + this), mm.
SEPARATION_PRIOR_MM = 8.0
#: Bands within this many degrees of the pair's tilt range count as competing fasciae.
PARALLEL_TOL_DEG = 3.0
# A band between the learned pair at least this strong (relative to the pair's weaker band), which the
# network marks at least faintly, makes the pair ambiguous (refused).
MISSED_BAND_STRENGTH = 0.8
MISSED_BAND_MIN_PROBABILITY = 0.05
# A learned band follows the band search's candidate whose centre lies this close (mm).
SNAP_MM = 1.0


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


class NoMuscleBoundariesError(MskusInputError):
    """The frame shows no measurable pair of muscle boundaries (reason says which)."""

    code = "no_muscle_boundaries"


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


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def _amplitude_lut(dynamic_range_db: float = ASSUMED_DYNAMIC_RANGE_DB) -> np.ndarray:
    """Gray value (0-255) -> linear echo amplitude (255 -> 1)."""
    g = np.arange(256, dtype=np.float64)
    return (10.0 ** ((g - 255.0) / 255.0 * dynamic_range_db / 20.0)).astype(np.float32)


_AMPLITUDE = _amplitude_lut()


def _strip_means(img: np.ndarray, strip_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of vertical strips ``strip_w`` columns wide: (rows, n) array and strip centre x."""
    rows, cols = img.shape
    strip_w = int(max(1, min(strip_w, cols)))
    n = cols // strip_w
    start = (cols - n * strip_w) // 2
    block = img[:, start : start + n * strip_w].reshape(rows, n, strip_w)
    centres = start + strip_w * np.arange(n) + (strip_w - 1) / 2.0
    return block.mean(axis=2, dtype=np.float32), centres


def _masked_quantile(values: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """Per column (axis 0) ``q``-quantile of ``values`` where ``mask``; NaN where empty (lower-index rule)."""
    n_valid = mask.sum(axis=0)
    srt = np.sort(np.where(mask, values, np.inf), axis=0)
    k = np.clip(np.floor(q * (n_valid - 1)).astype(np.int64), 0, values.shape[0] - 1)
    out = np.take_along_axis(srt, k[None, :], axis=0)[0]
    return np.where(n_valid > 0, out, np.nan)


def _robust_polyfit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, deg: int, scale: float,
                    iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial fit with iterative outlier rejection; returns (coefficients, inlier mask).

    ``scale`` is the smallest residual (px) ever treated as an outlier threshold.
    """
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    keep = np.isfinite(y) & (w > 0)
    deg_eff = deg
    coef = np.zeros(deg + 1)
    for _ in range(iters):
        if keep.sum() < deg_eff + 3:
            deg_eff = max(0, min(deg_eff, int(keep.sum()) - 3))
            if keep.sum() < 2:
                break
        coef_eff = np.polyfit(x[keep], y[keep], deg_eff, w=np.sqrt(w[keep]))
        coef = np.concatenate([np.zeros(deg - deg_eff), coef_eff])
        res = y - np.polyval(coef, x)
        sd = 1.4826 * np.median(np.abs(res[keep])) if keep.any() else scale
        thr = max(3.0 * sd, scale)
        new_keep = np.isfinite(y) & (w > 0) & (np.abs(res) <= thr)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return coef, keep


def _batch_quadfit(x: np.ndarray, y: np.ndarray, w: np.ndarray, scale: float,
                   iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Robust weighted quadratics for K curves at once: ``y``, ``w`` (K, n) over ``x`` (n).

    Same outlier rule as :func:`_robust_polyfit`. Returns (coefficients (K, 3),
    highest power first, and the inlier mask (K, n)); rows without enough points
    get NaN coefficients.
    """
    a = np.stack([x * x, x, np.ones_like(x)], axis=1)  # (n, 3)
    ok0 = np.isfinite(y) & (w > 0)
    yv = np.where(ok0, y, 0.0)
    keep = ok0
    coef = np.full((y.shape[0], 3), np.nan)
    for _ in range(iters):
        ww = np.where(keep, w, 0.0)
        ata = np.einsum("kn,ni,nj->kij", ww, a, a) + 1e-9 * np.eye(3)
        aty = np.einsum("kn,ni,kn->ki", ww, a, yv)
        solvable = keep.sum(axis=1) >= 5
        coef = np.where(solvable[:, None], np.linalg.solve(ata, aty[..., None])[..., 0], np.nan)
        res = np.abs(yv - coef @ a.T)
        med = np.array([np.median(r[k]) if k.any() else np.inf for r, k in zip(res, keep)])
        thr = np.maximum(3.0 * 1.4826 * med, scale)
        new_keep = ok0 & (res <= thr[:, None])
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return coef, keep


# --------------------------------------------------------------------------------------
# Band search
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Band:
    """A candidate band: centre curve ``y = polyval(coef, x)`` in crop pixels."""

    coef: np.ndarray
    y_c: float  # centre row at the middle column
    score: float
    z: float
    align: float = 1.0
    layer: Any = None  # the learned proposal (LayerBand) this band comes from, if any
    network_support: bool = False  # the network proposed this band
    extent: tuple[float, float] | None = None  # crop columns where the band was seen (None: the whole width)

    def y(self, x: np.ndarray | float) -> np.ndarray:
        return np.polyval(self.coef, x)


def _band_score(v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Continuity-weighted strength of ridge responses ``v`` (..., strips) over valid strips.

    Half the 35th percentile (the band must be seen over most of the width) plus
    half the mean, the mean capped at twice that percentile (one very bright
    patch does not make a band).
    """
    n = v.shape[-1]
    n_valid = valid.sum(axis=-1)
    srt = np.sort(np.where(valid, v, np.inf), axis=-1)
    q_idx = np.clip(np.floor(0.35 * (n_valid - 1)).astype(np.int64), 0, n - 1)
    q = np.take_along_axis(srt, q_idx[..., None], axis=-1)[..., 0]
    mean = np.where(valid, v, 0.0).sum(axis=-1) / np.maximum(n_valid, 1)
    score = 0.5 * (q + np.minimum(mean, 2.0 * np.maximum(q, 0)))
    return np.where(n_valid >= max(3, 0.5 * n), score, -np.inf)


def _find_bands(gray_f: np.ndarray, sx: float, sy: float) -> tuple[list[_Band], float]:
    """Long, nearly horizontal bright bands of a crop (gray values as float32).

    Stage 1 projects per-strip ridge responses along straight lines of every
    candidate tilt; stage 2 follows each candidate strip by strip, fits a
    quadratic (bands may be curved) and re-scores it along that curve.
    Returns the candidates sorted by depth and the per-strip noise level of the
    ridge response (gray levels).
    """
    rows, cols = gray_f.shape
    strip_w = max(2, int(round(2.0 / sx)))
    prof, xs = _strip_means(gray_f, strip_w)  # (rows, n)
    n = prof.shape[1]
    # Scale-normalised ridge response at three band half-widths (thin fasciae to
    # thick aponeuroses / bone cortex).
    ridge = None
    for sig_mm in RIDGE_SCALES_MM:
        sig = max(0.8, sig_mm / sy)
        r = -(sig**2) * gaussian_filter1d(prof, sig, axis=0, order=2, mode="nearest")
        ridge = r if ridge is None else np.maximum(ridge, r)
    assert ridge is not None
    noise = 1.4826 * float(np.median(np.abs(ridge - np.median(ridge)))) + 1e-6
    xc = (cols - 1) / 2.0
    # Stage 1 on rows about 0.2 mm apart (the ridge response is smooth at that scale).
    f = max(1, int(round(0.2 / sy)))
    rd = ridge[::f]  # (rows_d, n)
    rows_d = rd.shape[0]
    thetas = np.deg2rad(np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 1e-9, TILT_STEP_DEG))
    slopes = np.tan(thetas) * (sx / sy)  # px per px
    shift = (slopes[:, None] * (xs - xc)[None, :] / f).astype(np.float32)  # (ntheta, n), in rows_d
    src = np.arange(rows_d, dtype=np.float32)[None, :, None] + shift[:, None, :]  # (ntheta, rows_d, n)
    i0 = np.floor(src).astype(np.int32)
    frac = src - i0
    valid = (i0 >= 0) & (i0 < rows_d - 1)
    i0c = np.clip(i0, 0, rows_d - 2)
    kk = np.arange(n)[None, None, :]
    aligned = rd[i0c, kk] * (1 - frac) + rd[i0c + 1, kk] * frac  # (ntheta, rows_d, n)
    score = _band_score(aligned, valid)  # (ntheta, rows_d)
    best_t = np.argmax(score, axis=0)
    smax = score[best_t, np.arange(rows_d)]
    smax = np.where(np.isfinite(smax), smax, 0.0)
    peaks, _ = find_peaks(smax, distance=max(1, int(round(0.8 / (sy * f)))))
    peaks = peaks[smax[peaks] > 0.5 * noise]
    if peaks.size == 0:
        return [], noise
    peaks = peaks[np.argsort(smax[peaks])[::-1][:MAX_CANDIDATES]]
    best_slope = slopes[best_t[peaks]]
    peaks = peaks * f
    # Stage 2: follow each candidate per strip (ridge maximum within +-1.2 mm).
    half = int(math.ceil(1.2 / sy))
    offs = np.arange(-half, half + 1)
    line = peaks[:, None] + best_slope[:, None] * (xs - xc)[None, :]  # (K, n)
    idx = np.rint(line)[:, None, :].astype(np.int64) + offs[None, :, None]  # (K, w, n)
    inside = (idx >= 0) & (idx < rows)
    win = np.where(inside, ridge[np.clip(idx, 0, rows - 1), np.arange(n)[None, None, :]], -np.inf)
    k = np.argmax(win, axis=1)
    y_k = np.take_along_axis(idx, k[:, None, :], axis=1)[:, 0, :].astype(np.float64)
    r_k = np.take_along_axis(win, k[:, None, :], axis=1)[:, 0, :]
    slack = max(1, int(round(0.3 / sy)))
    ridge_s = maximum_filter1d(ridge, size=2 * slack + 1, axis=0, mode="nearest")
    xn = (xs - xc) / max(xc, 1.0)
    ok = np.isfinite(r_k) & (r_k > 0)
    coef_n, _ = _batch_quadfit(xn, np.where(ok, y_k, np.nan), np.where(ok, r_k, 0.0), scale=max(1.0, 0.3 / sy))
    yfit = coef_n @ np.stack([xn * xn, xn, np.ones_like(xn)])  # (K, n)
    yi = np.rint(np.nan_to_num(yfit, nan=-1.0)).astype(np.int64)
    vv = (yi >= 0) & (yi < rows)
    v = np.where(vv, ridge_s[np.clip(yi, 0, rows - 1), np.arange(n)[None, :]], 0.0)
    sc = _band_score(v, vv)
    # Alignment: share of strips whose own ridge maximum lies on the curve.
    align = np.mean(ok & (np.abs(y_k - yfit) <= max(1.0, 0.3 / sy)), axis=1)
    bands: list[_Band] = []
    for c in range(len(peaks)):
        if ok[c].sum() < max(4, 0.3 * n) or not np.all(np.isfinite(coef_n[c])):
            continue
        if not np.isfinite(sc[c]) or sc[c] <= 0:
            continue
        coef = _poly_in_x(coef_n[c], xc, max(xc, 1.0))
        bands.append(_Band(coef=coef, y_c=float(np.polyval(coef, xc)), score=float(sc[c]), z=float(sc[c]) / noise,
                           align=float(align[c])))
    # Two candidates that converged on the same band: keep the better one.
    bands.sort(key=lambda b: -b.score)
    kept: list[_Band] = []
    for b in bands:
        if all(abs(b.y_c - o.y_c) > 1.0 / sy for o in kept):
            kept.append(b)
    kept.sort(key=lambda b: b.y_c)
    return kept, noise


# --------------------------------------------------------------------------------------
# Edge refinement
# --------------------------------------------------------------------------------------


def _track_band(gray_f: np.ndarray, band: _Band, sx: float, sy: float) -> np.ndarray:
    """Robust quadratic (crop px, x -> y) through the per-strip peaks of a band."""
    rows, cols = gray_f.shape
    strip_w = max(2, int(round(1.0 / sx)))
    prof, xs = _strip_means(gray_f, strip_w)
    prof = gaussian_filter1d(prof, max(0.6, 0.15 / sy), axis=0, mode="nearest")
    xc = (cols - 1) / 2.0
    line = band.y(xs)
    half = int(math.ceil(1.5 / sy))
    offs = np.arange(-half, half + 1)
    idx = np.rint(line)[None, :].astype(np.int64) + offs[:, None]
    ok = (idx >= 0) & (idx < rows)
    win = np.where(ok, prof[np.clip(idx, 0, rows - 1), np.arange(len(xs))[None, :]], -np.inf)
    k = np.argmax(win, axis=0)
    kc = np.clip(k, 1, len(offs) - 2)
    cols_i = np.arange(len(xs))
    a, b, c = win[kc - 1, cols_i], win[kc, cols_i], win[kc + 1, cols_i]
    den = a - 2 * b + c
    with np.errstate(invalid="ignore", divide="ignore"):
        sub = np.where(np.isfinite(den) & (den < 0), 0.5 * (a - c) / den, 0.0)
    y_pk = idx[kc, cols_i] + np.clip(sub, -0.5, 0.5)
    prom = b - np.min(np.where(np.isfinite(win), win, np.inf), axis=0)
    good = np.isfinite(b) & (k > 0) & (k < len(offs) - 1) & (prom > 0)
    xn = (xs - xc) / max(xc, 1.0)
    coef, _ = _robust_polyfit(xn, np.where(good, y_pk, np.nan), np.where(good, prom, 0.0), 2,
                              scale=max(1.0, 0.3 / sy))
    # Convert to a polynomial in crop x.
    return _poly_in_x(coef, xc, max(xc, 1.0))


def _poly_in_x(coef_n: np.ndarray, xc: float, half: float) -> np.ndarray:
    """Quadratic coefficients in x from (up to quadratic) coefficients in xn = (x - xc) / half."""
    a, b, c = np.concatenate([np.zeros(3 - len(coef_n)), np.asarray(coef_n, dtype=np.float64)])[-3:]
    h2 = half * half
    return np.array([a / h2, b / half - 2.0 * a * xc / h2, a * xc * xc / h2 - b * xc / half + c])


@dataclass(frozen=True)
class _Edge:
    """Edge points of one band side, per sampled crop column."""

    x: np.ndarray  # crop columns sampled
    y: np.ndarray  # edge row per sampled column, NaN where not found
    contrast: np.ndarray  # band peak minus tissue level, gray levels
    level_ratio: float  # median peak / tissue as an amplitude ratio (assumed dynamic range)


def _sustained_below(prof: np.ndarray, level: np.ndarray, start: np.ndarray,
                     run: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the first index >= ``start`` after which ``prof`` stays below ``level`` for ``run`` samples.

    Returns (index, found). Short dips inside a speckled band do not count.
    """
    n = prof.shape[0]
    below = (prof < level[None, :]).astype(np.int32)
    c = np.concatenate([np.zeros((1, prof.shape[1]), np.int32), np.cumsum(below, axis=0)])
    i = np.arange(n)[:, None]
    end = np.minimum(i + run, n)
    full = (c[end[:, 0]] - c[i[:, 0]]) == (end - i)  # all below over [i, i+run)
    full &= (i >= start[None, :]) & ((end - i) >= min(run, 2))
    return np.argmax(full, axis=0), full.any(axis=0)


def _band_edge(gray_f: np.ndarray, amp: np.ndarray, centre: np.ndarray, direction: int,
               reach_px: np.ndarray, sx: float, sy: float) -> _Edge:
    """Edge of a band on its side ``direction`` (+1 below it, -1 above it).

    ``centre`` is the band centre row per crop column, ``reach_px`` how far (px)
    the tissue on that side extends from the centre (per column). The band is
    straightened along ``centre`` and averaged over 2 mm laterally. Per sampled
    column, on the gray value: the band peak; the level of the tissue beyond the
    band; the point after which the profile stays below half way between the two
    for 0.4 mm (the band's final fall). Then, on the linear amplitude, the
    steepest descent within 0.3 mm of that point: the true edge of a blurred step.
    """
    rows, cols = amp.shape
    span = int(math.ceil(5.0 / sy))
    back = int(math.ceil(1.5 / sy))
    u = np.arange(-back, span + 1, dtype=np.float32)  # along `direction`
    map_y = (centre[None, :] + direction * u[:, None]).astype(np.float32)
    map_x = np.broadcast_to(np.arange(cols, dtype=np.float32)[None, :], map_y.shape).copy()
    kx = max(3, int(round(2.0 / sx)) | 1)
    # Gray (log) profile to find the band's final fall; linear amplitude to place it.
    prof = cv2.blur(cv2.remap(gray_f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                    (kx, 1), borderType=cv2.BORDER_REFLECT)
    lin = cv2.blur(cv2.remap(amp, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                   (kx, 1), borderType=cv2.BORDER_REFLECT)
    # Profiles are 2 mm wide averages: every ~0.3 mm column is enough.
    step = max(1, int(round(0.3 / sx)))
    xs = np.arange(0, cols, step)
    prof, lin, map_y = prof[:, xs], lin[:, xs], map_y[:, xs]
    centre = centre[xs]
    outside = (map_y < -0.5) | (map_y > rows - 0.5)
    ucol = u[:, None]
    cidx = np.arange(xs.size)
    reach = np.maximum(np.asarray(reach_px, dtype=np.float64)[xs] if np.ndim(reach_px) else reach_px, 2.0)
    usable = ~outside & (ucol <= reach[None, :])
    # Band peak within +-1 mm of the tracked centre.
    pk_zone = (np.abs(ucol) <= max(1.0, 1.0 / sy)) & usable
    pk_idx = np.argmax(np.where(pk_zone, prof, -np.inf), axis=0)
    peak = prof[pk_idx, cidx]
    u_pk = u[pk_idx]
    run = max(2, int(round(0.4 / sy)))
    # First guess of the tissue level: a low quantile of the 4 mm beyond the peak.
    zone0 = (ucol > u_pk[None, :]) & (ucol <= u_pk[None, :] + 4.0 / sy) & usable
    tissue = _masked_quantile(prof, zone0, 0.3)
    for _ in range(2):
        half = tissue + 0.5 * (peak - tissue)
        start, found = _sustained_below(prof, half, pk_idx, run)
        # Tissue level from 0.3 to 2.5 mm beyond that point.
        u_s = u[np.clip(start, 0, len(u) - 1)]
        zone = (ucol >= u_s[None, :] + 0.3 / sy) & (ucol <= u_s[None, :] + 2.5 / sy) & usable
        t_new = _masked_quantile(prof, zone, 0.5)
        tissue = np.where(np.isfinite(t_new), t_new, tissue)
    half = tissue + 0.5 * (peak - tissue)
    start, found = _sustained_below(prof, half, pk_idx, run)
    f = np.clip(start, 1, len(u) - 1)
    p1, p0 = prof[f, cidx], prof[f - 1, cidx]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((p0 - half) / (p0 - p1), 0.0, 1.0)
    u_half = u[f - 1] + t
    found &= np.isfinite(half) & (start > pk_idx)
    # Steepest descent of the linear amplitude near that crossing.
    d = np.full_like(lin, -np.inf)
    d[1:-1] = 0.5 * (lin[:-2] - lin[2:])
    w = max(2.0, 0.3 / sy)
    zone = (np.abs(ucol - u_half[None, :]) <= w) & (ucol > u_pk[None, :]) & usable
    dz = np.where(zone, d, -np.inf)
    g = np.argmax(dz, axis=0)
    gc = np.clip(g, 1, len(u) - 2)
    a, b, c = dz[gc - 1, cidx], dz[gc, cidx], dz[gc + 1, cidx]
    with np.errstate(invalid="ignore", divide="ignore"):
        den = a - 2 * b + c
        off = np.where(np.isfinite(den) & (den < 0), 0.5 * (a - c) / den, 0.0)
    u_edge = np.where(np.isfinite(b), u[gc] + np.clip(off, -0.5, 0.5), u_half)
    y = centre + direction * u_edge
    y = np.where(found, y, np.nan)
    contrast = np.where(found, peak - tissue, np.nan)  # gray levels
    with np.errstate(invalid="ignore", divide="ignore"):
        # Peak over tissue as an amplitude ratio (assumed dynamic range).
        ratio = float(10.0 ** (np.nanmedian(contrast) / 255.0 * ASSUMED_DYNAMIC_RANGE_DB / 20.0)) if found.any() \
            else float("nan")
    return _Edge(x=xs.astype(np.float64), y=y, contrast=contrast, level_ratio=ratio)


def _fit_edge(edge: _Edge, cols: int, sy: float) -> tuple[np.ndarray, float, float]:
    """Robust quadratic through edge points; returns (coefficients in crop x, inlier fraction, rms px)."""
    x = edge.x
    xc = (cols - 1) / 2.0
    half = max(xc, 1.0)
    good = np.isfinite(edge.y) & np.isfinite(edge.contrast) & (edge.contrast > 0)
    if good.sum() < max(6, 0.25 * x.size):
        return np.array([np.nan]), 0.0, np.inf
    w = np.clip(np.nan_to_num(edge.contrast), 0, None)
    coef_n, keep = _robust_polyfit((x - xc) / half, np.where(good, edge.y, np.nan), np.where(good, w, 0.0), 2,
                                   scale=max(0.7, 0.15 / sy))
    res = edge.y[keep] - np.polyval(coef_n, (x[keep] - xc) / half)
    rms = float(np.sqrt(np.mean(res**2))) if keep.any() else np.inf
    return _poly_in_x(coef_n, xc, half), float(keep.sum()) / x.size, rms


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


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


def _tilt_deg(coef: np.ndarray, x: float, sx: float, sy: float) -> float:
    slope = float(np.polyval(np.polyder(coef), x)) if len(coef) > 1 else 0.0
    return math.degrees(math.atan(slope * sy / sx))


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


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def _prior_scale(mm: float | None, nominal: float) -> float:
    """Pixel size (mm) for the size priors: the calibration when plausible for B-mode, else nominal."""
    if mm is None or not (_PLAUSIBLE_MM_PER_PX[0] <= mm <= _PLAUSIBLE_MM_PER_PX[1]):
        return float(nominal)
    return float(mm)


def _rank_pairs(bands: list[_Band], sx: float, sy: float, rows: int, cols: int) -> list[tuple[_Band, _Band]]:
    """Superficial and deep bands among the candidates.

    Every pair of candidates at least ``MIN_BAND_SEPARATION_MM`` apart over the
    whole width is scored by the geometric mean of its two bands' scores, minus
    half the strongest *parallel* candidate between them (a muscle holds no band
    like its own fasciae; oblique fascicle lines do not count), weighted by ``sep / (sep + 8 mm)`` (a
    thin layer between two close lines, such as the fat under the skin or the
    gap between a deep aponeurosis and the next fascia, is rarely the muscle
    imaged) and, slightly, by depth. The first muscle under the skin is the one
    measured: when the layer directly above the best pair (the pair whose deep
    band is the best pair's superficial band) scores at least 80 % of it, that
    shallower pair comes first (repeatedly); then the others by score. Pairs
    scoring <= 0 are dropped.
    """
    cand = [b for b in bands if b.y_c * sy >= SKIN_ZONE_MM and b.z >= MIN_BAND_Z]
    if len(cand) < 2:
        raise NoMuscleBoundariesError("no pair of fascia / aponeurosis bands found in the tissue region")
    xc = (cols - 1) / 2.0
    xe = np.linspace(0.0, cols - 1.0, 9)
    sep_min = MIN_BAND_SEPARATION_MM / sy
    near = 1.5 / sy
    y = np.array([b.y_c for b in cand])
    sc = np.array([b.score for b in cand])
    tilt = np.array([_tilt_deg(b.coef, xc, sx, sy) for b in cand])
    curves = np.array([b.y(xe) for b in cand])
    ranked: list[tuple[float, _Band, _Band]] = []
    for i, bi in enumerate(cand):
        for j in range(i + 1, len(cand)):
            bj = cand[j]
            gap = curves[j] - curves[i]
            if bj.y_c - bi.y_c < sep_min or np.any(gap < 0.5 * sep_min):
                continue
            lo_t = min(tilt[i], tilt[j]) - PARALLEL_TOL_DEG
            hi_t = max(tilt[i], tilt[j]) + PARALLEL_TOL_DEG
            parallel = (tilt >= lo_t) & (tilt <= hi_t)
            between = parallel & (y > bi.y_c + near) & (y < bj.y_c - near)
            pen = BETWEEN_PENALTY * float(sc[between].max()) if between.any() else 0.0
            sep_mm = (bj.y_c - bi.y_c) * sy
            strength = math.sqrt(max(bi.score, 0.0) * max(bj.score, 0.0))
            score = (strength - pen) * sep_mm / (sep_mm + SEPARATION_PRIOR_MM)
            # Slight preference for the shallower pair: the muscle under the skin.
            score *= 1.0 - 0.15 * bi.y_c / max(rows, 1)
            ranked.append((score, bi, bj))
    if not ranked:
        raise NoMuscleBoundariesError("no deep aponeurosis or bone surface found below the superficial fascia")
    ranked.sort(key=lambda r: -r[0])
    ranked = [r for r in ranked if r[0] > 0]
    if ranked:
        # The first muscle under the skin: the layer directly above the best
        # pair (its deep band is the best pair's superficial band) goes first
        # when nearly as good, repeatedly.
        while True:
            top_score, top_sup = ranked[0][0], ranked[0][1]
            above = [i for i, r in enumerate(ranked)
                     if r[2] is top_sup and r[0] >= SHALLOW_PAIR_TOLERANCE * top_score]
            if not above:
                break
            ranked.insert(0, ranked.pop(max(above, key=lambda i: ranked[i][0])))
    good = [(bi, bj) for _, bi, bj in ranked]
    if not good:
        raise NoMuscleBoundariesError(
            "no distinct pair of fascia / aponeurosis bands: the muscle boundaries are ambiguous"
        )
    return good


@dataclass(frozen=True)
class _PairEdges:
    sup_centre: np.ndarray  # band centre rows per crop column
    deep_centre: np.ndarray
    e_sup: _Edge
    e_deep: _Edge
    sup_fit: np.ndarray  # inner-edge quadratics (crop px)
    deep_fit: np.ndarray
    fractions: tuple[float, float]
    rms: tuple[float, float]


def _only_columns(edge: _Edge, columns: tuple[float, float] | None) -> _Edge:
    """The edge with its points outside ``columns`` (crop x, inclusive) dropped."""
    if columns is None:
        return edge
    outside = (edge.x < columns[0]) | (edge.x > columns[1])
    return _Edge(x=edge.x, y=np.where(outside, np.nan, edge.y), contrast=np.where(outside, np.nan, edge.contrast),
                 level_ratio=edge.level_ratio)


def _pair_edges(gray_f: np.ndarray, amp: np.ndarray, sup_band: _Band, deep_band: _Band,
                sx: float, sy: float, columns: tuple[float, float] | None = None) -> _PairEdges:
    """Track both bands, locate and fit their inner edges; refuse a pair that is no muscle.

    ``columns``: crop columns where both bands were seen (learned proposals);
    edge points outside them are not used (the bands' curves are only
    extrapolated there).
    """
    rows, cols = gray_f.shape
    x = np.arange(cols, dtype=np.float64)
    yc_s = np.polyval(_track_band(gray_f, sup_band, sx, sy), x)
    yc_d = np.polyval(_track_band(gray_f, deep_band, sx, sy), x)
    gap = yc_d - yc_s
    if np.median(gap) * sy < 0.5 * MIN_BAND_SEPARATION_MM:
        raise NoMuscleBoundariesError("superficial and deep bands merge: no muscle between them")
    e_sup = _only_columns(_band_edge(gray_f, amp, yc_s, +1, 0.5 * gap, sx, sy), columns)
    e_deep = _only_columns(_band_edge(gray_f, amp, yc_d, -1, 0.5 * gap, sx, sy), columns)
    # A fascia / aponeurosis / bone surface is a specular reflector, clearly
    # brighter than the muscle; a speckle fluctuation is not.
    min_contrast = MIN_BAND_CONTRAST_DB / ASSUMED_DYNAMIC_RANGE_DB * 255.0
    for e, what in ((e_sup, "superficial fascia"), (e_deep, "deep aponeurosis or bone surface")):
        c = e.contrast[np.isfinite(e.contrast)]
        if c.size == 0 or float(np.median(c)) < min_contrast:
            raise NoMuscleBoundariesError(f"no {what} brighter than the muscle found")
    sup_fit, sup_frac, sup_rms = _fit_edge(e_sup, cols, sy)
    deep_fit, deep_frac, deep_rms = _fit_edge(e_deep, cols, sy)
    if not np.all(np.isfinite(sup_fit)):
        raise NoMuscleBoundariesError("superficial fascia inner edge not found across the width")
    if not np.all(np.isfinite(deep_fit)):
        raise NoMuscleBoundariesError("no deep aponeurosis or bone surface edge found across the width")
    if np.any(np.polyval(deep_fit, x) - np.polyval(sup_fit, x) <= 0):
        raise NoMuscleBoundariesError("fitted fascia edges cross: no muscle between them")
    return _PairEdges(yc_s, yc_d, e_sup, e_deep, sup_fit, deep_fit, (sup_frac, deep_frac), (sup_rms, deep_rms))


class BoundaryFinder(Protocol):
    """Proposes boundary bands (``pipeline.segmentation.aponeurosis.LayerBand``), shallowest first."""

    name: str
    version: str

    def find(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> Any: ...


class ClassicalBandSearch:
    """The classical band search as a :class:`BoundaryFinder` (it proposes nothing: ``find`` is ``None``).

    Parameters
    ----------
    fallback_note : str
        Why it stands in for the learned finder ('' when chosen), written into the SR.
    """

    name = "mskus-classical-bands"
    version = "1"

    def __init__(self, fallback_note: str = "") -> None:
        self.fallback_note = fallback_note

    def find(self, gray: np.ndarray, tissue_box: PixelBox, exclude: np.ndarray | None = None) -> None:
        return None


def describe_boundaries(finder: object | None) -> str:
    """How a finder chooses the boundary bands, as the SR and tables state it."""
    if finder is None or isinstance(finder, ClassicalBandSearch):
        note = getattr(finder, "fallback_note", "")
        return f"classical band search ({note})" if note else "classical band search"
    return f"learned {getattr(finder, 'version', '')}".strip()


def _as_band(layer: Any, xc: float) -> _Band:
    return _Band(coef=np.asarray(layer.centre_coef, dtype=np.float64), y_c=float(layer.y(xc)),
                 score=float(layer.probability), z=float("inf"), align=float(layer.coverage), layer=layer,
                 network_support=True, extent=tuple(layer.x_range))


def _common_columns(sup: _Band, deep: _Band) -> tuple[float, float] | None:
    """Crop columns where both learned bands were seen (None: no restriction)."""
    ranges = [b.extent for b in (sup, deep) if b.extent is not None]
    if not ranges:
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if hi > lo else None


def _learned_pairs(layers: list[Any], probability: np.ndarray, gray_f: np.ndarray, sx: float, sy: float,
                   rows: int, cols: int, min_superficial_extent: float = 0.0, layer: int = 1) -> list[tuple[_Band, _Band]]:
    """The muscle under the skin from the network's bands: the shallowest band at least
    ``min_superficial_extent`` of the width long and the next one at least ``MIN_BAND_SEPARATION_MM``
    deeper. With one band only, the deep boundary (often a bone surface, which the network was not
    taught) comes from the classical band search below it. ``layer`` > 1: the same one layer deeper
    each time (its superficial boundary is the deep boundary of the layer above)."""
    xc = (cols - 1) / 2.0
    # No skin zone here: the network does not mark the skin, and a cropped frame may start at the fascia.
    # A short patch above the first long band is not the muscle's fascia.
    first = next((i for i, b in enumerate(layers)
                  if b.x_range[1] - b.x_range[0] + 1 >= min_superficial_extent * cols), len(layers))
    usable = list(layers[first:])
    if not usable:
        raise NoMuscleBoundariesError(
            "muscle boundaries not found with confidence: no fascia or aponeurosis band in the tissue region"
        )
    classical, _noise = _find_bands(gray_f, sx, sy)
    for _ in range(layer - 1):
        # Step down one layer: the next band at least MIN_BAND_SEPARATION_MM deeper starts the next muscle.
        top = _as_band(usable[0], xc)
        usable = [b for b in usable[1:] if (_as_band(b, xc).y_c - top.y_c) * sy >= MIN_BAND_SEPARATION_MM]
        if not usable:
            raise NoMuscleBoundariesError(
                f"muscle boundaries not found with confidence: no muscle layer {layer} (fewer boundary bands)"
            )
    sup = _snap(_as_band(usable[0], xc), classical, sx, sy)
    for deep in (_snap(_as_band(layer, xc), classical, sx, sy) for layer in usable[1:]):
        if (deep.y_c - sup.y_c) * sy >= MIN_BAND_SEPARATION_MM:
            if _missed_boundary(classical, probability, sup, deep, sx, sy, cols) is not None:
                # The image shows a boundary-like band the network barely marks between its two: on
                # the real training frames the deep boundary was then never where the annotators put it.
                raise NoMuscleBoundariesError(
                    "muscle boundaries not found with confidence: a band between the proposed fascia and "
                    "aponeurosis is as strong as they are (which layer is the muscle is ambiguous)"
                )
            return [(sup, deep)]
    below = [b for b in classical if (b.y_c - sup.y_c) * sy >= MIN_BAND_SEPARATION_MM]
    pairs = [(a, b) for a, b in _rank_pairs([sup, *below], sx, sy, rows, cols) if a is sup] if below else []
    if not pairs:
        raise NoMuscleBoundariesError(
            "muscle boundaries not found with confidence: one fascia band and no deep aponeurosis or bone surface"
        )
    return pairs


def _snap(band: _Band, classical: list[_Band], sx: float, sy: float) -> _Band:
    """The classical candidate on the same band (centre within ``SNAP_MM``, parallel), carrying the proposal.

    The network says which band; the band search's own curve follows the
    band's ridge on the image, so the edge tracer starts where it would
    without the network (the network's centre may sit between two close lines).
    """
    if band.extent is None:
        return band
    # Close at the centre and parallel where the network saw the band (a crossing, differently tilted
    # band passes close to it at one column).
    x_mid = 0.5 * (band.extent[0] + band.extent[1])
    tilt = _tilt_deg(band.coef, x_mid, sx, sy)
    close = [c for c in classical
             if abs(c.y_c - band.y_c) * sy <= SNAP_MM and abs(_tilt_deg(c.coef, x_mid, sx, sy) - tilt) <= PARALLEL_TOL_DEG]
    if not close:
        return band
    best = max(close, key=lambda c: c.score)
    # The band search only keeps bands seen over most of the width: no column restriction.
    return dataclasses.replace(best, layer=band.layer, network_support=True, extent=None)


def _missed_boundary(classical: list[_Band], probability: np.ndarray, sup: _Band, deep: _Band, sx: float,
                     sy: float, cols: int) -> _Band | None:
    """A band the network half-missed between its two: parallel, as strong, and some network support.

    A muscle holds no band like its own fasciae (oblique fascicles do not
    count); such a band between the proposed pair, which the network also
    marks faintly (mean probability along it at least
    ``MISSED_BAND_MIN_PROBABILITY``, where muscle texture scores about 0.001),
    makes the pair ambiguous.
    """
    xc = (cols - 1) / 2.0
    xs = np.arange(cols)

    def support(b: _Band) -> float:
        y = np.clip(np.rint(b.y(xs)).astype(np.int64), 0, probability.shape[0] - 1)
        return float(probability[y, xs].mean())

    near = 1.5 / sy

    def match(b: _Band) -> _Band | None:
        close = [c for c in classical if abs(c.y_c - b.y_c) <= near]
        return max(close, key=lambda c: c.score) if close else None

    ends = [m for m in (match(sup), match(deep)) if m is not None]
    if len(ends) < 2:
        return None
    floor = MISSED_BAND_STRENGTH * min(m.score for m in ends)
    tilts = [_tilt_deg(m.coef, xc, sx, sy) for m in ends]

    def parallel(c: _Band) -> bool:
        # Parallel to one of the pair (an aponeurosis), not merely tilted between them as the fascicles
        # of a pennate muscle are.
        tilt = _tilt_deg(c.coef, xc, sx, sy)
        return any(abs(tilt - t) <= PARALLEL_TOL_DEG for t in tilts)

    between = [
        c for c in classical
        if sup.y_c + max(near, MIN_BAND_SEPARATION_MM / sy) < c.y_c < deep.y_c - near
        and c.score >= floor and c.z >= MIN_BAND_Z and parallel(c)
        and support(c) >= MISSED_BAND_MIN_PROBABILITY
    ]
    return min(between, key=lambda c: c.y_c) if between else None


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
