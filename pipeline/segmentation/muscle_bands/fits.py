"""Numeric helpers of the muscle band search: echo amplitude, strip profiles, robust curve fits.

Gray values are turned back into linear echo amplitude with an assumed
dynamic range; the tissue region is averaged in vertical strips; bands and
edges are fitted with robust quadratics (iterative outlier rejection, one
curve or many at once). Coordinates are crop pixels ``(x, y)``.
"""

from __future__ import annotations

import math

import numpy as np

#: Log-compression range assumed to turn gray values back into echo amplitude.
ASSUMED_DYNAMIC_RANGE_DB = 50.0


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


def _poly_in_x(coef_n: np.ndarray, xc: float, half: float) -> np.ndarray:
    """Quadratic coefficients in x from (up to quadratic) coefficients in xn = (x - xc) / half."""
    a, b, c = np.concatenate([np.zeros(3 - len(coef_n)), np.asarray(coef_n, dtype=np.float64)])[-3:]
    h2 = half * half
    return np.array([a / h2, b / half - 2.0 * a * xc / h2, a * xc * xc / h2 - b * xc / half + c])


def _tilt_deg(coef: np.ndarray, x: float, sx: float, sy: float) -> float:
    slope = float(np.polyval(np.polyder(coef), x)) if len(coef) > 1 else 0.0
    return math.degrees(math.atan(slope * sy / sx))
