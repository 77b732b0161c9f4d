"""Band search and pair selection: the muscle's superficial and deep boundary bands.

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

Coordinates are crop pixels ``(x, y)`` = (column, row), pixel centres at integers;
``sx``, ``sy`` are the pixel sizes (mm) used for the size priors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d
from scipy.signal import find_peaks

from pipeline.segmentation.muscle_bands.finder import NoMuscleBoundariesError
from pipeline.segmentation.muscle_bands.fits import _batch_quadfit, _poly_in_x, _strip_means, _tilt_deg

#: Tilts searched for the fasciae, degrees (physical, x and y in mm).
MAX_TILT_DEG = 12.0
TILT_STEP_DEG = 1.0
#: Smallest accepted distance between the two bands (centre to centre), mm.
MIN_BAND_SEPARATION_MM = 3.0
#: Bands whose centre lies this close to the top of the tissue region are the skin line.
SKIN_ZONE_MM = 1.5
#: Band candidates weaker than this (ridge response / speckle noise) are ignored.
MIN_BAND_Z = 2.0
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
