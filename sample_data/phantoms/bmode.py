"""Physical grid, texture fields and B-mode formation (speckle, point spread function, log compression).

B-mode formation follows the usual simplified scanner model:

1. an amplitude (echogenicity) map ``A`` and a coherent ("specular") map ``S`` are
   built in physical space on a grid three times finer than the output pixels;
2. ``A`` multiplies fully developed speckle (circular complex Gaussian scatterers,
   hence Rayleigh-distributed envelope);
3. the complex field and ``S`` are convolved with an anisotropic Gaussian point
   spread function (lateral FWHM 0.3-0.5 mm, axial FWHM 0.15-0.25 mm);
4. the envelope is taken, block-averaged to the pixel grid, attenuated with depth
   (residual after time gain compensation), and log-compressed over a ~50 dB
   dynamic range to 0..255.

Because the bright epineurial rim of a nerve is blurred and log-compressed like
everything else, a thin rim looks wider than it is: its half-maximum inner edge on
the displayed image lies inside the true border and its ridge lies outside it
(CONTRACT.md section 4).  The ground truth always refers to the geometry, never
to the blurred appearance.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from .scenes import Acoustics, Band, Ellipse

#: Supersampling factor of the physical grid relative to the output pixels (odd).
SUPERSAMPLE = 3
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class _Grid:
    """Supersampled physical grid of the tissue region, optionally shifted (cine)."""

    def __init__(
        self,
        shape_px: tuple[int, int],
        mm_per_px: float,
        shift_sub: tuple[int, int] = (0, 0),
        pad_px: int = 8,
        k: int = SUPERSAMPLE,
    ) -> None:
        self.h_px, self.w_px = shape_px
        self.s = float(mm_per_px)
        self.k = k
        self.h = self.s / k
        self.hs, self.ws = self.h_px * k, self.w_px * k
        self.pad = pad_px * k
        dz, dx = shift_sub
        if abs(dz) > self.pad or abs(dx) > self.pad:
            raise ValueError(f"shift {shift_sub} exceeds the padding of {self.pad} sub-pixels")
        self.dz, self.dx = int(dz), int(dx)
        off = (k - 1) / 2.0
        #: image (probe-relative) coordinates in mm
        self.x_img = ((np.arange(self.ws) - off) / k * self.s).astype(np.float64)
        self.z_img = ((np.arange(self.hs) - off) / k * self.s).astype(np.float64)
        #: world (tissue) coordinates in mm
        self.x = self.x_img + self.dx * self.h
        self.z = self.z_img + self.dz * self.h
        self.X = self.x[None, :]
        self.Z = self.z[:, None]

    @property
    def shift_mm(self) -> tuple[float, float]:
        """World shift ``(dx, dz)`` in mm (world = image + shift)."""
        return self.dx * self.h, self.dz * self.h

    def _crop(self, arr: np.ndarray) -> np.ndarray:
        p = self.pad
        return arr[p + self.dz : p + self.dz + self.hs, p + self.dx : p + self.dx + self.ws]

    def padded_shape(self) -> tuple[int, int]:
        return self.hs + 2 * self.pad, self.ws + 2 * self.pad

    def field(self, seed: Sequence[int], corr_mm: float | tuple[float, float]) -> np.ndarray:
        """Smooth zero-mean, unit-SD Gaussian random field fixed to the tissue."""
        return self._crop(_smooth_noise(seed, self.padded_shape(), corr_mm, self.h))

    def window(self, x0: float, x1: float, z0: float, z1: float) -> tuple[slice, slice]:
        """Index slices of the sub-grid covering world box ``[x0, x1] x [z0, z1]``."""
        c0 = int(np.searchsorted(self.x, x0) - 2)
        c1 = int(np.searchsorted(self.x, x1) + 2)
        r0 = int(np.searchsorted(self.z, z0) - 2)
        r1 = int(np.searchsorted(self.z, z1) + 2)
        return slice(max(r0, 0), max(min(r1, self.hs), 0)), slice(max(c0, 0), max(min(c1, self.ws), 0))


def _smooth_noise(
    seed: Sequence[int], shape: tuple[int, int], corr_mm: float | tuple[float, float], h_mm: float
) -> np.ndarray:
    """Gaussian-filtered white noise normalised to unit SD.

    ``corr_mm`` is the Gaussian filter sigma in mm, either isotropic or ``(lateral, axial)``.
    """
    rng = np.random.default_rng(list(seed))
    if isinstance(corr_mm, tuple):
        cx, cz = corr_mm
    else:
        cx = cz = float(corr_mm)
    sx, sz = cx / h_mm, cz / h_mm
    f = max(1, int(min(sx, sz) // 3))
    ch, cw = shape[0] // f + 3, shape[1] // f + 3
    n = rng.standard_normal((ch, cw), dtype=np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sx / f, sigmaY=sz / f, borderType=cv2.BORDER_REFLECT)
    sd = float(n.std())
    n /= sd if sd > 0 else 1.0
    if f > 1:
        n = cv2.resize(n, (cw * f, ch * f), interpolation=cv2.INTER_LINEAR)
    return n[: shape[0], : shape[1]]


def _ramp(d: np.ndarray, h: float) -> np.ndarray:
    """Anti-aliased coverage of the half-space ``d <= 0`` (``d`` signed distance, mm)."""
    return np.clip(0.5 - d / h, 0.0, 1.0)


def _ellipse_sdf(X: np.ndarray, Z: np.ndarray, e: Ellipse) -> np.ndarray:
    """First-order signed distance (mm, negative inside) to an ellipse."""
    th = math.radians(e.rotation_deg)
    c, s = math.cos(th), math.sin(th)
    dx = X - e.cx_mm
    dz = Z - e.cz_mm
    u = dx * c + dz * s
    v = -dx * s + dz * c
    r = np.sqrt((u / e.a_mm) ** 2 + (v / e.b_mm) ** 2)
    g = np.sqrt((u / e.a_mm**2) ** 2 + (v / e.b_mm**2) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.where(r > 1e-9, g / np.maximum(r, 1e-12), 1.0 / max(e.a_mm, e.b_mm))
    return (r - 1.0) / np.maximum(grad, 1e-9)


def _band_cov(grid: _Grid, band: Band) -> np.ndarray:
    """Coverage (0..1) of a band on the grid (vertical anti-aliasing)."""
    top = np.asarray(band.top(grid.x))[None, :]
    bot = top + band.thickness_mm
    cov = np.clip((grid.Z - top) / grid.h + 0.5, 0.0, 1.0) * np.clip((bot - grid.Z) / grid.h + 0.5, 0.0, 1.0)
    if band.x_range_mm is not None:
        lo, hi = band.x_range_mm
        taper = np.clip((grid.X - lo) / 1.0, 0.0, 1.0) * np.clip((hi - grid.X) / 1.0, 0.0, 1.0)
        cov = cov * taper
    return cov


def _blend(dst: np.ndarray, value: np.ndarray | float, cov: np.ndarray) -> None:
    """In place ``dst = dst * (1 - cov) + value * cov``."""
    dst *= 1.0 - cov
    dst += np.asarray(value) * cov


def _db(x: float | np.ndarray) -> float | np.ndarray:
    """Amplitude ratio of ``x`` dB."""
    return np.power(10.0, np.asarray(x) / 20.0)


def _seed(scene_seed: int, *tag: int) -> list[int]:
    return [int(scene_seed), *[int(t) for t in tag]]


def _psf_sigmas_sub(ac: Acoustics, h: float) -> tuple[float, float]:
    lat, ax = ac.psf_fwhm_mm
    return lat * _FWHM_TO_SIGMA / h, ax * _FWHM_TO_SIGMA / h


def _psf_energy(sx: float, sz: float) -> float:
    """Sum of squares of the (unit-sum) discrete Gaussian kernel used by OpenCV."""
    n = int(2 * math.ceil(4 * max(sx, sz)) + 3)
    imp = np.zeros((n, n), np.float32)
    imp[n // 2, n // 2] = 1.0
    k = cv2.GaussianBlur(imp, (0, 0), sigmaX=sx, sigmaY=sz, borderType=cv2.BORDER_CONSTANT)
    return float(np.sum(k.astype(np.float64) ** 2))


def _scatterers(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Circular complex Gaussian scatterers with E|z|^2 = 1, as (rows, cols, 2) float32."""
    return rng.standard_normal((*shape, 2), dtype=np.float32) * np.float32(1.0 / math.sqrt(2.0))


def _form_bmode(
    amp: np.ndarray,
    spec: np.ndarray,
    grid: _Grid,
    ac: Acoustics,
    rng: np.random.Generator,
    scat: np.ndarray | None = None,
    extra_atten_db: np.ndarray | None = None,
) -> np.ndarray:
    """Speckle, PSF, envelope, depth attenuation and log compression -> uint8 image."""
    if scat is None:
        scat = _scatterers(rng, (grid.hs, grid.ws))
    noise = _scatterers(rng, (grid.hs, grid.ws))
    att_db = -ac.atten_db_per_cm * (grid.z_img / 10.0)
    att = _db(att_db)[:, None].astype(np.float32)
    if extra_atten_db is not None:
        att = att * _db(-extra_atten_db).astype(np.float32)
    a = (amp.astype(np.float32) * att)[..., None]
    fld = a * scat + np.float32(ac.noise_amp) * noise
    sx, sz = _psf_sigmas_sub(ac, grid.h)
    fld = cv2.GaussianBlur(fld, (0, 0), sigmaX=sx, sigmaY=sz, borderType=cv2.BORDER_REFLECT)
    fld *= np.float32(1.0 / math.sqrt(_psf_energy(sx, sz)))
    sp = cv2.GaussianBlur((spec.astype(np.float32) * att), (0, 0), sigmaX=sx, sigmaY=sz,
                          borderType=cv2.BORDER_REFLECT)
    env = np.sqrt((fld[..., 0] + sp) ** 2 + fld[..., 1] ** 2)
    k = grid.k
    env = env.reshape(grid.h_px, k, grid.w_px, k).mean(axis=(1, 3))
    db = 20.0 * np.log10(np.maximum(env, 1e-6)) + ac.gain_db
    gray = 255.0 * (db + ac.dynamic_range_db) / ac.dynamic_range_db
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _skin_layers(grid: _Grid, amp: np.ndarray, spec: np.ndarray, skin: float, dermis: float,
                 subcut_bottom: np.ndarray | float, fat_db: float, seed: int) -> None:
    """Skin entry echo, dermis and subcutaneous fat with hyperechoic septa (in place)."""
    Z = grid.Z
    h = grid.h
    sub_b = np.asarray(subcut_bottom)
    if sub_b.ndim == 1:
        sub_b = sub_b[None, :]
    septa_f = grid.field(_seed(seed, 11), (1.2, 0.6))
    septa = np.exp(-((septa_f - 0.3) ** 2) / (2 * 0.09**2)) + 0.6 * np.exp(-((septa_f + 0.8) ** 2) / (2 * 0.07**2))
    fat = _db(fat_db) * (1.0 + 2.2 * septa) * _db(1.5 * grid.field(_seed(seed, 12), 1.0))
    cov_fat = np.clip((sub_b - Z) / h + 0.5, 0.0, 1.0)
    _blend(amp, fat, cov_fat)
    _blend(spec, 0.0, cov_fat)
    cov_derm = np.clip((dermis - Z) / h + 0.5, 0.0, 1.0)
    _blend(amp, _db(3.0) * _db(1.5 * grid.field(_seed(seed, 13), 0.4)), cov_derm)
    cov_skin = np.clip((skin - Z) / h + 0.5, 0.0, 1.0)
    _blend(amp, _db(8.0), cov_skin)
    _blend(spec, 2.0 * (1.0 + 0.2 * grid.field(_seed(seed, 14), (2.0, 0.5))), cov_skin)


def _add_band(grid: _Grid, amp: np.ndarray, spec: np.ndarray, band: Band, seed: list[int]) -> None:
    cov = _band_cov(grid, band)
    var = 1.0 + 0.25 * grid.field(seed, (2.5, 0.3))
    _blend(amp, _db(band.amp_db) * var, cov)
    _blend(spec, band.specular * np.clip(var, 0.3, None), cov)
