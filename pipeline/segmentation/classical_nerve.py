"""Classical nerve segmentation: a dark, textured interior inside a bright epineurial rim.

Method
------
1. *Candidates.* On a copy resampled to about 0.15 mm/px, a ring filter at
   several radii scores "ring brighter than both its inside and its outside".
   An anechoic vessel (dark inside, no rim) and a straight fascia line (bright
   on two sides only) score low. The best local maxima are kept.
2. *Rim tracing.* From each candidate centre, rays are cast; the polar image
   is smoothed along the angle and the rim ridge is traced by dynamic
   programming (brightest closed path with bounded radial jumps). The centre
   is then moved to the ridge's centroid and the trace repeated.
3. *Evidence.* Per ray: rim height above the inside and the outside; the
   share of rays with a clear rim (coverage), the interior/surround ratio
   (vessels are anechoic), the speckle SD. These give the confidence; a
   candidate below the acceptance thresholds is not a nerve.
4. *Border.* CONTRACT.md section 4: blur and log compression widen a thin
   bright rim, so its half-maximum inner edge lies inside the true border and
   its ridge outside. The rim's blurred width (FWHM of the ray-averaged,
   ridge-aligned profile) and the blur itself (speckle autocorrelation along
   the same directions) give the true rim width ``w = sqrt(FWHM² − PSF²)``.
   The inner border is placed ``w / 2`` inside the ridge, ray by ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.geometry import polygon_area
from pipeline.segmentation.base import NerveSegmentation, RimFeatures

__all__ = ["ClassicalNerveSegmenter", "ClassicalNerveParameters"]

#: The speckle autocorrelation of log-compressed B-mode measures the blur about
#: 10 % narrower than it acts on a bright rim; calibrated on simulated phantoms
#: (the sample-data generator and the pymust physics simulations).
SPECKLE_TO_PSF = 1.1


@dataclass(frozen=True)
class ClassicalNerveParameters:
    """Parameters that affect results (recorded in the SR's Algorithm Identification).

    Lengths in mm.
    """

    min_radius_mm: float = 0.8
    max_radius_mm: float = 4.5
    search_mm_per_px: float = 0.2
    n_rays: int = 72
    max_candidates: int = 4
    min_rim_coverage: float = 0.9
    min_rim_prominence: float = 2.0
    min_rim_prominence_low: float = 1.2
    ray_prominence: float = 0.35
    min_interior_to_surround: float = 0.45
    nominal_mm_per_px: float = 0.08

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _disk_kernel(r_in: float, r_out: float) -> np.ndarray:
    size = int(math.ceil(r_out)) * 2 + 1
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(xx - c, yy - c)
    k = ((d >= r_in) & (d <= r_out)).astype(np.float32)
    return k / max(k.sum(), 1.0)


def _circular_gaussian_smooth(polar: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth the rows (angles) of a polar image with wrap-around."""
    if sigma <= 0:
        return polar
    pad = int(3 * sigma) + 1
    padded = np.concatenate([polar[-pad:], polar, polar[:pad]], axis=0)
    ksize = 2 * pad + 1
    smoothed = cv2.GaussianBlur(padded, (1, ksize), sigmaX=0, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return smoothed[pad:-pad]


def _trace_closed_ridge(score: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_jump: int) -> np.ndarray:
    """Brightest closed path through a polar score image by dynamic programming.

    Parameters
    ----------
    score : (A, M) array; higher is better.
    lo, hi : (A,) allowed radius index range per angle.
    max_jump : largest change of radius index between neighbouring angles.

    Returns
    -------
    (A,) radius index per angle.
    """
    n_angles, n_radii = score.shape
    idx = np.arange(n_radii)
    allowed = (idx[None, :] >= lo[:, None]) & (idx[None, :] <= hi[:, None])
    scale = float(np.std(score[allowed])) if allowed.any() else 1.0
    masked = np.where(allowed, score, -1e9)
    # A quarter lap of warm-up, then the lap that is kept: the path's start
    # then does not depend on an arbitrary first angle.
    warm = max(1, n_angles // 4)
    tiled = np.concatenate([masked[-warm:], masked], axis=0)
    total = tiled.shape[0]
    offsets = np.arange(-max_jump, max_jump + 1)
    penalty = (0.02 * scale) * np.abs(offsets)[:, None]
    back = np.zeros((total, n_radii), dtype=np.int16)
    acc = tiled[0].astype(np.float64)
    padded = np.full(n_radii + 2 * max_jump, -1e18)
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_radii)  # a view: updated with padded
    for a in range(1, total):
        padded[max_jump : max_jump + n_radii] = acc
        # cand[k, j]: arrive at radius j from radius j + offsets[k]
        cand = windows - penalty
        best = np.argmax(cand, axis=0)
        acc = cand[best, idx] + tiled[a]
        back[a] = best
    path = np.zeros(total, dtype=np.int64)
    path[-1] = int(np.argmax(acc))
    for a in range(total - 1, 0, -1):
        path[a - 1] = path[a] + offsets[back[a, path[a]]]
    return path[warm:]


def _speckle_fwhm_px(gray: np.ndarray, max_lag: int = 16) -> tuple[float, float]:
    """FWHM (x, y) in px of the speckle autocorrelation: the display blur."""
    img = gray.astype(np.float32)
    img = img - cv2.blur(img, (31, 31))
    var = float(np.mean(img * img)) or 1.0

    def fwhm(axis: int) -> float:
        previous = 1.0
        for lag in range(1, max_lag + 1):
            if axis == 1:
                value = float(np.mean(img[:, :-lag] * img[:, lag:])) / var
            else:
                value = float(np.mean(img[:-lag] * img[lag:])) / var
            if value < 0.5:
                frac = (previous - 0.5) / max(previous - value, 1e-9)
                return 2.0 * (lag - 1 + frac)
            previous = value
        return 2.0 * max_lag

    return fwhm(1), fwhm(0)


class ClassicalNerveSegmenter:
    """Default nerve segmenter (scikit-image/OpenCV only).

    Parameters
    ----------
    parameters : ClassicalNerveParameters, optional
        Thresholds and size priors.
    """

    name = "mskus-classical-nerve"
    version = "1.0"

    def __init__(self, parameters: ClassicalNerveParameters | None = None, *, keep_rejected: bool = False) -> None:
        self.parameters = parameters or ClassicalNerveParameters()
        # For diagnostics only: also return candidates that failed the criteria.
        self.keep_rejected = keep_rejected

    # -- public -----------------------------------------------------------------
    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Best nerve in the frame as a one-item list, or an empty list. See :class:`NerveSegmenter`."""
        p = self.parameters
        scale = mm_per_px if mm_per_px else p.nominal_mm_per_px
        crop = Crop(tissue_box)
        roi = crop.apply(gray).astype(np.float32)
        excluded = crop.apply(exclude) if exclude is not None else None
        if excluded is not None and excluded.any():
            # Colour pixels carry no B-mode information: fill with the local tissue level.
            fill = float(np.median(roi[~excluded])) if (~excluded).any() else 0.0
            roi = roi.copy()
            roi[excluded] = fill
        smooth_sigma = max(0.8, 0.05 / scale)
        smooth = cv2.GaussianBlur(roi, (0, 0), sigmaX=smooth_sigma)
        noise_sd = float(np.std(roi - cv2.blur(roi, (5, 5)))) or 1.0
        psf_x, psf_y = _speckle_fwhm_px(crop.apply(gray))
        best: tuple[float, NerveSegmentation] | None = None
        for cx, cy, r0 in self._candidates(smooth, scale):
            found = self._trace(smooth, cx, cy, r0, scale, noise_sd, (psf_x, psf_y), smooth_sigma)
            if found is None:
                continue
            seg_crop, score = found
            if best is None or score > best[0]:
                best = (score, seg_crop)
        if best is None:
            return []
        seg = best[1]
        return [
            NerveSegmentation(
                contour_px=crop.to_frame(seg.contour_px),
                ridge_px=crop.to_frame(seg.ridge_px),
                confidence=seg.confidence,
                features=seg.features,
            )
        ]

    # -- steps ------------------------------------------------------------------
    def _candidates(self, smooth: np.ndarray, scale: float) -> list[tuple[float, float, float]]:
        """(x, y, radius) in crop pixels of the best ring-filter responses."""
        p = self.parameters
        factor = max(1.0, p.search_mm_per_px / scale)
        small = cv2.resize(smooth, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
        work_mm = scale * factor
        radii = np.geomspace(p.min_radius_mm, p.max_radius_mm, 6) / work_mm
        h, w = small.shape
        best_resp = np.full(small.shape, -np.inf, dtype=np.float32)
        best_r = np.zeros(small.shape, dtype=np.float32)
        sd = float(small.std()) or 1.0
        for r in radii:
            if 2 * r * 1.9 >= min(h, w):
                continue
            inside = cv2.filter2D(small, -1, _disk_kernel(0.0, 0.7 * r), borderType=cv2.BORDER_REFLECT)
            ring = cv2.filter2D(small, -1, _disk_kernel(0.85 * r, 1.25 * r), borderType=cv2.BORDER_REFLECT)
            outer = cv2.filter2D(small, -1, _disk_kernel(1.45 * r, 1.9 * r), borderType=cv2.BORDER_REFLECT)
            resp = (ring - np.maximum(inside, outer)) / sd
            better = resp > best_resp
            best_resp[better] = resp[better]
            best_r[better] = r
        # Keep centres far enough from the edge for the whole ring.
        margin = int(max(2, radii[0]))
        best_resp[:margin] = -np.inf
        best_resp[-margin:] = -np.inf
        best_resp[:, :margin] = -np.inf
        best_resp[:, -margin:] = -np.inf
        nms_size = max(3, int(2 * p.min_radius_mm / work_mm) | 1)
        dilated = cv2.dilate(best_resp, np.ones((nms_size, nms_size), np.uint8))
        peaks = np.argwhere((best_resp >= dilated) & np.isfinite(best_resp) & (best_resp > 0))
        if peaks.size == 0:
            return []
        values = best_resp[peaks[:, 0], peaks[:, 1]]
        order = np.argsort(values)[::-1][: p.max_candidates]
        # Weak responses next to a strong one are not worth tracing.
        kept = [i for i in order if values[i] >= 0.15 * values[order[0]]]
        out = []
        for y, x in peaks[kept]:
            out.append(((x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5, float(best_r[y, x]) * factor))
        return out

    def _polar(self, image: np.ndarray, cx: float, cy: float, r_max: float, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.parameters
        angles = np.linspace(0, 2 * np.pi, p.n_rays, endpoint=False)
        radii = np.arange(0, r_max, step, dtype=np.float32)
        map_x = (cx + np.cos(angles)[:, None] * radii[None, :]).astype(np.float32)
        map_y = (cy + np.sin(angles)[:, None] * radii[None, :]).astype(np.float32)
        polar = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return polar, angles, radii

    def _trace_pass(
        self, smooth: np.ndarray, cx: float, cy: float, r_lo: float, r_hi: float, scale: float, step: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One ridge trace from (cx, cy) with radii in [r_lo, r_hi] px.

        Returns the path (radius index per ray), the radii and angles sampled,
        the polar image and its angle-smoothed score.
        """
        p = self.parameters
        r_max = r_hi + 1.5 / scale
        polar, angles, radii = self._polar(smooth, cx, cy, r_max, step)
        score = _circular_gaussian_smooth(polar, sigma=1.5)
        lo = np.full(p.n_rays, max(1, int(r_lo / step)))
        hi = np.full(p.n_rays, min(len(radii) - 1, int(r_hi / step)))
        r_mid = 0.5 * (r_lo + r_hi)
        max_jump = max(1, int(round(r_mid * (2 * np.pi / p.n_rays) * 1.2 / step)))
        path = _trace_closed_ridge(score, lo, hi, max_jump)
        return path, radii, angles, polar, score

    def _trace(
        self,
        smooth: np.ndarray,
        cx: float,
        cy: float,
        r0: float,
        scale: float,
        noise_sd: float,
        psf: tuple[float, float],
        smooth_sigma: float,
    ) -> tuple[NerveSegmentation, float] | None:
        p = self.parameters
        step = 0.5
        # The ring filter may lock on a part of the rim with too small a radius:
        # the first passes search a wide radius range and re-centre on the ridge.
        r_search = max(r0, 1.6 / scale)
        for _ in range(3):
            path, radii, angles, _, _ = self._trace_pass(smooth, cx, cy, 0.3 * r0, 2.0 * r_search, scale, step)
            ridge_r = radii[path]
            xs = cx + np.cos(angles) * ridge_r
            ys = cy + np.sin(angles) * ridge_r
            new_cx, new_cy = float(xs.mean()), float(ys.mean())
            r0 = float(np.sqrt(max(polygon_area(np.column_stack([xs, ys])), 1.0) / np.pi))
            r_search = r0
            moved = math.hypot(new_cx - cx, new_cy - cy)
            cx, cy = new_cx, new_cy
            if moved < 0.5:
                break
        if r0 * scale < 0.5 * p.min_radius_mm or r0 * scale > 1.5 * p.max_radius_mm:
            return None
        path, radii, angles, polar, score = self._trace_pass(smooth, cx, cy, 0.5 * r0, 1.6 * r0, scale, step)

        n_r = len(radii)
        ray_idx = np.arange(p.n_rays)
        peak = score[ray_idx, path]
        # Inside level per ray: 30-70 % of the ridge radius; outside: 0.5-1.2 mm beyond it.
        frac = radii[None, :] / np.maximum(radii[path][:, None], 1e-6)
        inside_mask = (frac >= 0.2) & (frac <= 0.7)
        out_lo = path + int(round(0.5 / scale / step))
        out_hi = path + int(round(1.2 / scale / step))
        col = np.arange(n_r)[None, :]
        outside_mask = (col >= out_lo[:, None]) & (col <= np.minimum(out_hi, n_r - 1)[:, None])
        inside = _masked_mean(score, inside_mask)
        outside = _masked_mean(score, outside_mask)
        prominence = (peak - np.maximum(inside, outside)) / noise_sd
        coverage = float(np.mean(prominence > p.ray_prominence))
        low_prominence = float(np.percentile(prominence, 10))
        interior_mean = float(np.nanmean(inside))
        surround_mean = float(np.nanmean(outside))
        interior_ratio = interior_mean / max(surround_mean, 1.0)

        # Ridge-aligned, ray-averaged rim profile (unsmoothed along the angle).
        ridge_r = _smooth_closed_radius(radii[path].astype(np.float64))
        rim_fwhm_px = _rim_profile_widths(polar, ridge_r / step, step, 1.0 / scale)
        # Blur along the rays: combine the speckle FWHM of x and y by direction.
        psf_along = np.sqrt((psf[0] * np.cos(angles)) ** 2 + (psf[1] * np.sin(angles)) ** 2)
        psf_fwhm = float(np.mean(psf_along)) * SPECKLE_TO_PSF
        # Blurs add in quadrature: the scanner's (from the speckle) and our own smoothing.
        smoothing_fwhm = 2.3548 * smooth_sigma
        rim_width = math.sqrt(max(rim_fwhm_px**2 - psf_fwhm**2 - smoothing_fwhm**2, 0.0))
        border_r = np.maximum(ridge_r - rim_width / 2.0, 0.5)
        contour = np.column_stack([cx + np.cos(angles) * border_r, cy + np.sin(angles) * border_r])
        ridge = np.column_stack([cx + np.cos(angles) * ridge_r, cy + np.sin(angles) * ridge_r])

        median_prominence = float(np.median(prominence))
        is_nerve = (
            coverage >= p.min_rim_coverage
            and median_prominence >= p.min_rim_prominence
            and low_prominence >= p.min_rim_prominence_low
            and interior_ratio >= p.min_interior_to_surround
        )
        features = RimFeatures(
            rim_coverage=coverage,
            rim_prominence=median_prominence,
            rim_prominence_low=low_prominence,
            interior_to_surround=interior_ratio,
            rim_width_px=rim_width,
            psf_fwhm_px=psf_fwhm,
        )
        if not is_nerve and not self.keep_rejected:
            return None
        confidence = float(
            np.clip(coverage, 0, 1)
            * (1 - math.exp(-low_prominence / 1.2))
            * min(1.0, interior_ratio / 0.6)
        )
        seg = NerveSegmentation(contour_px=contour, ridge_px=ridge, confidence=confidence, features=features)
        darkness = float(np.clip(1.3 - interior_ratio, 0.1, 1.0))
        return seg, coverage * median_prominence * darkness


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1)
    sums = np.where(mask, values, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _smooth_closed_radius(radius: np.ndarray, harmonics: int = 5) -> np.ndarray:
    """Low-order Fourier fit of a closed radius curve r(angle).

    The traced ridge follows speckle by a pixel here and there; the nerve
    outline itself is smooth. Keeping a few harmonics keeps ellipses and
    gentle indentations and drops the jitter.
    """
    spectrum = np.fft.rfft(radius)
    spectrum[harmonics + 1 :] = 0
    return np.fft.irfft(spectrum, n=len(radius))


def _rim_profile_widths(
    polar: np.ndarray, ridge_samples: np.ndarray, step: float, px_per_mm: float
) -> float:
    """FWHM (px) of the ray-averaged rim profile aligned on the ridge.

    The profile window and the baselines (the levels inside and outside the
    rim) are set in millimetres, so the estimate does not depend on the pixel
    size: baselines are taken 0.6–1.0 mm from the ridge.
    """
    n_rays, n_r = polar.shape
    samples_per_mm = px_per_mm / step
    half_window = max(4, min(int(round(1.0 * samples_per_mm)), n_r // 2))
    offsets = np.arange(-half_window, half_window + 1)
    # Sub-sample alignment on the (smoothed) ridge by linear interpolation.
    positions = ridge_samples[:, None] + offsets[None, :]
    lo = np.clip(np.floor(positions).astype(int), 0, n_r - 1)
    hi = np.clip(lo + 1, 0, n_r - 1)
    frac = positions - np.floor(positions)
    rows = np.arange(n_rays)[:, None]
    aligned = polar[rows, lo] * (1 - frac) + polar[rows, hi] * frac
    profile = np.median(aligned, axis=0)
    centre = half_window
    near = max(1, int(round(0.15 * samples_per_mm)))
    top = profile[centre - near : centre + near + 1].max()
    base_start = max(1, int(round(0.6 * samples_per_mm)))
    inner_base = float(np.median(profile[: max(1, centre - base_start + 1)]))
    outer_base = float(np.median(profile[centre + base_start :])) if centre + base_start < len(profile) else float(profile[-1])

    def crossing(direction: int, base: float) -> float:
        half = base + 0.5 * (top - base)
        i = centre
        while 0 < i < len(profile) - 1 and profile[i] > half:
            i += direction
        j = i - direction
        p0, p1 = profile[j], profile[i]
        t = (p0 - half) / max(p0 - p1, 1e-9)
        return abs((j + direction * t) - centre) * step

    inner = crossing(-1, inner_base)
    outer = crossing(+1, outer_base)
    return inner + outer
