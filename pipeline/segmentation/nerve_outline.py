"""Outline refinement of a learned nerve region: a calibrated level, and the rim model where a rim is seen.

The network's decision boundary (nerve margin 0) is where the network is
undecided, not where the annotators or CONTRACT.md section 4 put the border.
:func:`refine_outline` moves it in two steps:

1. *Calibrated level.* The border is the ``level`` contour of the nerve
   margin (nerve probability minus the largest other class probability),
   restricted to the region and its surroundings. ``level`` is fitted on the
   training split of the real scans, out of fold (``training/fit_nerve_outline.py``);
   0 is the network's own outline.
2. *Rim model* (CONTRACT.md section 4). The gray image is sampled along the
   normals of that contour (``n_points`` equally spaced points, ``search``
   equivalent radii inward, and outward as far past the network's outline).
   Where a bright rim is seen on a normal (a ridge higher
   than the levels both inside and outside it by ``min_prominence`` noise
   SDs), the border is placed half the blur-corrected rim width inside the
   ridge: the rim's blurred width (FWHM of the ridge-aligned median profile)
   and the display blur (speckle autocorrelation, as the classical tracer
   measures it) give the true rim width ``w = sqrt(FWHM² − PSF²)``. Normals
   without a rim keep the level contour. The offsets are smoothed along the
   contour; a nerve with too few rim normals keeps the level contour
   entirely.

All lengths in pixels of the crop the region lives in; no pixel size is
needed, so the same step runs on calibrated and uncalibrated frames.
Everything is vectorised over the normals (one :func:`cv2.remap`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.geometry import polygon_area
from pipeline.segmentation.classical_nerve import SPECKLE_TO_PSF, _rim_profile_widths, _speckle_fwhm_px

#: Gaussian smoothing of the gray image before the profiles are sampled (px).
SMOOTH_SIGMA_PX = 1.0

__all__ = ["OutlineParameters", "RefinedOutline", "level_contour", "refine_outline"]


@dataclass(frozen=True)
class OutlineParameters:
    """Settings of the outline refinement (recorded in the SR with the segmenter's).

    Attributes
    ----------
    level : float
        Nerve-margin level of the border where no rim is seen (0: the
        network's decision boundary; > 0 shrinks, < 0 grows). Fitted on the
        training split.
    rim : bool
        Use the rim model where a rim is seen.
    n_points : int
        Normals sampled along the contour.
    search : float
        Half-length of each normal, in equivalent radii of the region.
    min_prominence : float
        A normal shows a rim when its ridge is this many noise SDs above the
        level inside and the level outside it.
    min_rim_share : float
        Smallest share of normals with a rim for the rim model to be used at
        all on a nerve.
    max_shift : float
        Largest move of the border by the rim model, in equivalent radii.
    smooth_points : float
        SD of the Gaussian smoothing of the offsets along the contour, in
        normals.
    nominal_radius_mm : float
        On uncalibrated frames, the region's equivalent radius is taken to be
        this many mm to set the rim-profile windows (as the ``auto``
        segmenter's tracer does); no mm value is derived from it.
    """

    level: float = 0.0
    rim: bool = True
    n_points: int = 96
    search: float = 0.3
    min_prominence: float = 1.0
    min_rim_share: float = 0.3
    max_shift: float = 0.25
    smooth_points: float = 2.0
    nominal_radius_mm: float = 2.0

    def __post_init__(self) -> None:
        if not -1.0 < self.level < 1.0:
            raise ValueError(f"level must lie in (-1, 1), not {self.level}")
        if self.n_points < 16:
            raise ValueError(f"n_points must be at least 16, not {self.n_points}")

    def as_dict(self) -> dict[str, float | int | bool]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RefinedOutline:
    """The refined border of one nerve region (crop pixels).

    Attributes
    ----------
    contour_px : ndarray (N, 2)
        Refined border ``(x, y)``.
    level_contour_px : ndarray (M, 2)
        The calibrated-level border before the rim model.
    ridge_px : ndarray (N, 2)
        Rim ridge where seen, else the border itself (for QA overlays).
    rim_share : float
        Share of normals on which a rim was seen (0 when the rim model was not used).
    rim_width_px : float
        Blur-corrected rim width (NaN without a rim).
    psf_fwhm_px : float
        Display blur along the normals (NaN without a rim).
    """

    contour_px: np.ndarray
    level_contour_px: np.ndarray
    ridge_px: np.ndarray
    rim_share: float
    rim_width_px: float
    psf_fwhm_px: float


def level_contour(margin: np.ndarray, region_mask: np.ndarray, level: float, grow_px: float) -> np.ndarray | None:
    """Sub-pixel ``level`` contour of ``margin`` around one region (crop pixels), or ``None``.

    Parameters
    ----------
    margin : ndarray (h, w)
        Nerve probability minus the largest other class probability.
    region_mask : ndarray of bool (h, w)
        The region (``margin > 0`` component).
    level : float
        Contour level; the part of ``margin > level`` that overlaps the
        region most (within ``grow_px`` pixels of it) is outlined.
    grow_px : float
        How far, in pixels, a lowered level may extend the region.
    """
    from pipeline.segmentation.learned_nerve import _region_contour  # circular import otherwise

    if level == 0.0:
        return _region_contour(margin, region_mask)
    ys, xs = np.nonzero(region_mask)
    pad = int(math.ceil(grow_px)) + 3
    y0, y1 = max(0, ys.min() - pad), min(region_mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(region_mask.shape[1], xs.max() + pad + 1)
    sub_region = region_mask[y0:y1, x0:x1]
    above = margin[y0:y1, x0:x1] > level
    if level < 0.0:
        k = 2 * int(math.ceil(grow_px)) + 1
        near = cv2.dilate(sub_region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
        above &= near
    else:
        above &= sub_region
    count, comp = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    overlap = np.bincount(comp[sub_region], minlength=count)[1:]
    if overlap.max() == 0:
        return None
    keep = comp == (1 + int(np.argmax(overlap)))
    full = np.zeros_like(region_mask)
    full[y0:y1, x0:x1] = keep
    return _region_contour(margin - level, full)


def _resample_closed(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` points equally spaced along a closed polyline, counter-clockwise order kept."""
    closed = np.vstack([points, points[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.column_stack([np.interp(targets, s, closed[:, 0]), np.interp(targets, s, closed[:, 1])])


def _circular_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with wrap-around."""
    if sigma <= 0:
        return values
    pad = int(3 * sigma) + 1
    padded = np.concatenate([values[-pad:], values, values[:pad]], axis=0).astype(np.float32)
    squeeze = padded.ndim == 1
    if squeeze:
        padded = padded[:, None]
    out = cv2.GaussianBlur(padded, (1, 2 * pad + 1), sigmaX=0, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    out = out[pad:-pad]
    return out[:, 0] if squeeze else out


def _outward_normals(points: np.ndarray) -> np.ndarray:
    """Unit outward normals of a closed polygon's vertices (either orientation)."""
    tangent = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    tangent = _circular_smooth(tangent, 1.5).astype(np.float64)
    tangent /= np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)[:, None]
    normal = np.column_stack([tangent[:, 1], -tangent[:, 0]])
    # Shoelace sign: image coordinates (y down); make the normals point away from the centroid.
    centre = points.mean(axis=0)
    if float(np.sum((points - centre) * normal)) < 0:
        normal = -normal
    return normal


def _circular_median(values: np.ndarray, size: int) -> np.ndarray:
    """Running median of odd ``size`` along a closed sequence."""
    half = size // 2
    padded = np.concatenate([values[-half:], values, values[:half]])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)


def refine_outline(
    roi: np.ndarray,
    margin: np.ndarray,
    region_mask: np.ndarray,
    contour_px: np.ndarray,
    parameters: OutlineParameters,
    *,
    mm_per_px: float | None = None,
    psf_fwhm_px: tuple[float, float] | None = None,
) -> RefinedOutline:
    """Refined border of one learned nerve region.

    Parameters
    ----------
    roi : ndarray (h, w)
        Gray crop (0–255) the network ran on.
    margin : ndarray (h, w)
        Nerve probability minus the largest other class probability, same crop.
    region_mask : ndarray of bool (h, w)
        The region.
    contour_px : ndarray (N, 2)
        The network's outline of the region ``(x, y)``, crop pixels (used
        when the level contour cannot be formed).
    parameters : OutlineParameters
    mm_per_px : float, optional
        Pixel size; sets the windows of the rim profile in mm. Without it
        the region's equivalent radius is taken to be
        ``parameters.nominal_radius_mm`` (no mm value is derived from it).
    psf_fwhm_px : (float, float), optional
        Speckle FWHM along x and y in pixels (computed from ``roi`` when not
        given; pass it to share it between the regions of a frame).

    Returns
    -------
    RefinedOutline
    """
    p = parameters
    nan = float("nan")
    r_eq = math.sqrt(max(float(region_mask.sum()), 1.0) / math.pi)
    base = level_contour(margin, region_mask, p.level, p.search * r_eq) if p.level != 0.0 else contour_px
    if base is None or len(base) < 8 or polygon_area(base) < 4.0:
        base = contour_px
    if not p.rim:
        return RefinedOutline(base, base, base.copy(), 0.0, nan, nan)
    points = _resample_closed(np.asarray(base, dtype=np.float64), p.n_points)
    r_eq = math.sqrt(max(polygon_area(points), 1.0) / math.pi)
    px_per_mm = 1.0 / mm_per_px if mm_per_px else r_eq / p.nominal_radius_mm
    normal = _outward_normals(points)
    half = max(2.0, p.search * r_eq)  # ridge search, px either side of the level border
    # A level contour well inside the network's outline can leave the rim's ridge beyond a band around
    # it: outward, the search reaches as far past the network's outline as it would past the level border.
    outward = half + max(0.0, math.sqrt(max(polygon_area(contour_px), 1.0) / math.pi) - r_eq)
    side = 1.2 * px_per_mm  # profile: room for the levels 0.6-1.0 mm beside the ridge
    step = 0.5
    offsets = np.arange(-(half + side), outward + side + step / 2, step)
    map_x = (points[:, 0:1] + normal[:, 0:1] * offsets[None, :]).astype(np.float32)
    map_y = (points[:, 1:2] + normal[:, 1:2] * offsets[None, :]).astype(np.float32)
    image = roi.astype(np.float32)
    smooth = cv2.GaussianBlur(image, (0, 0), sigmaX=SMOOTH_SIGMA_PX)
    profiles = cv2.remap(smooth, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    noise_sd = float(np.std(image - cv2.blur(image, (5, 5)))) or 1.0

    # Ridge per normal on profiles smoothed along the contour, then a smooth ridge line.
    score = _circular_smooth(profiles, 1.5)
    n_off = len(offsets)
    search = (offsets >= -half) & (offsets <= outward)
    first = int(np.argmax(search))
    ridge_idx = first + np.argmax(score[:, search], axis=1)
    ridge = _circular_smooth(_circular_median(offsets[ridge_idx], 5), 1.0).astype(np.float64)
    # Rim seen: ridge above the levels 0.6-1.0 mm inside and outside it.
    rel = offsets[None, :] - ridge[:, None]
    near_mm = rel / px_per_mm
    inside_sel = (near_mm <= -0.6) & (near_mm >= -1.0)
    outside_sel = (near_mm >= 0.6) & (near_mm <= 1.0)
    inside_level = _masked_median(score, inside_sel)
    outside_level = _masked_median(score, outside_sel)
    rows = np.arange(p.n_points)
    ridge_pos = (ridge - offsets[0]) / step
    lo = np.clip(np.floor(ridge_pos).astype(int), 0, n_off - 1)
    frac = ridge_pos - np.floor(ridge_pos)
    peak = score[rows, lo] * (1 - frac) + score[rows, np.minimum(lo + 1, n_off - 1)] * frac
    prominence = (peak - np.fmax(inside_level, outside_level)) / noise_sd
    is_rim = np.nan_to_num(prominence, nan=-1.0) >= p.min_prominence
    share = float(is_rim.mean())
    if share < p.min_rim_share:
        return RefinedOutline(base, base, base.copy(), share, nan, nan)

    # CONTRACT.md section 4: rim width from the ridge-aligned profile, blur removed in quadrature.
    fwhm = _rim_profile_widths(profiles[is_rim], ridge_pos[is_rim], step, px_per_mm)
    if psf_fwhm_px is None:
        psf_fwhm_px = _speckle_fwhm_px(roi)
    cos2 = normal[is_rim, 0] ** 2
    psf = float(np.mean(np.sqrt(psf_fwhm_px[0] ** 2 * cos2 + psf_fwhm_px[1] ** 2 * (1.0 - cos2)))) * SPECKLE_TO_PSF
    width = math.sqrt(max(fwhm**2 - psf**2 - (2.3548 * SMOOTH_SIGMA_PX) ** 2, 0.0))

    move = np.clip(ridge - width / 2.0, -p.max_shift * r_eq, p.max_shift * r_eq)
    # Normals without a rim keep the level border, eased into the rim's shift along the contour: the
    # smoothed shift of the rim normals (zero elsewhere) fades out with distance from them.
    weight = is_rim.astype(np.float32)
    move = np.where(is_rim, move, _circular_smooth((move * weight).astype(np.float32), p.smooth_points))
    contour = points + normal * move[:, None]
    ridge_pts = points + normal * np.where(is_rim, ridge, move)[:, None]
    return RefinedOutline(contour, base, ridge_pts, share, width, psf)


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of each row over ``mask`` (NaN where a row has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(np.where(mask, values, np.nan), axis=1)
