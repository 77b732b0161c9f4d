"""Deterministic generator of synthetic musculoskeletal ultrasound DICOM studies.

The images imitate what a linear-array scanner exports: an 800 x 600 frame with a
black background, a rectangular B-mode tissue region, burned-in text, depth ticks,
a focus marker and a gray-scale bar outside the tissue region, and a Sequence of
Ultrasound Regions describing the calibration.

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

Coordinates
-----------
Pixel coordinates are ``[x, y]`` = ``[column, row]`` with pixel centres at integer
values (numpy / OpenCV convention; add 0.5 for DICOM SCOORD).  Scene functions
return images of the tissue region only, with truth in tissue-region pixel
coordinates; :func:`truth_to_frame` shifts them into frame coordinates.

Run ``.venv/bin/python sample_data/generate.py [--out DIR]`` to (re)create the
bundled sample data; the output is byte-identical on every run.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)
from skimage.draw import polygon as _sk_polygon

__all__ = [
    "FRAME_SHAPE",
    "ULTRASOUND_IMAGE_STORAGE",
    "ULTRASOUND_MULTIFRAME_IMAGE_STORAGE",
    "Acoustics",
    "Band",
    "Ellipse",
    "NerveScene",
    "MuscleScene",
    "UltrasoundRegion",
    "PatientInfo",
    "StudyInfo",
    "SeriesInfo",
    "EquipmentInfo",
    "sample_acoustics",
    "sample_nerve_scene",
    "sample_muscle_scene",
    "render_nerve_scene",
    "render_nerve_cine",
    "render_muscle_scene",
    "compose_frame",
    "paint_color_doppler",
    "doppler_palette",
    "rgb_to_palette",
    "make_doppler_nerve_case",
    "write_doppler_nerve_file",
    "truth_to_frame",
    "tissue_region",
    "frame_luma",
    "nerve_echogenicity",
    "contour_mask",
    "muscle_roi_mask",
    "muscle_echogenicity",
    "write_ultrasound_dicom",
    "read_luma_frames",
    "deterministic_uid",
    "generate_sample_data",
    "main",
]

LOG = logging.getLogger("mskus.sample_data")

#: Frame size (rows, columns) of every generated image.
FRAME_SHAPE: tuple[int, int] = (600, 800)
ULTRASOUND_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
ULTRASOUND_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
#: Supersampling factor of the physical grid relative to the output pixels (odd).
SUPERSAMPLE = 3
_UID_NAMESPACE = "mskus-sample-data-v1"
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def deterministic_uid(*parts: object) -> UID:
    """Return a reproducible ``2.25.`` UID derived from ``parts``.

    Parameters
    ----------
    *parts
        Anything with a stable ``str()``; the same parts always give the same UID.

    Returns
    -------
    pydicom.uid.UID
        A UID of the form ``2.25.<decimal>``.
    """
    # (pydicom's generate_uid(prefix=None) ignores entropy_srcs and is random, so the
    # 2.25 UUID-style integer is derived here from a SHA-256 of the parts)
    digest = hashlib.sha256("\x1f".join([_UID_NAMESPACE, *[str(p) for p in parts]]).encode("utf-8")).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big')}")


# --------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------


@dataclass
class Acoustics:
    """Imaging-system parameters of one acquisition.

    Attributes
    ----------
    psf_fwhm_mm
        Point spread function full width at half maximum, ``(lateral, axial)`` in mm.
    dynamic_range_db
        Log-compression dynamic range in dB (``0 dB`` of display = gray 255).
    gain_db
        Display gain added to the envelope in dB before mapping to gray.
    atten_db_per_cm
        Residual depth attenuation after TGC, dB per cm of depth.
    noise_amp
        Amplitude of the electronic noise floor (same units as the echo maps).
    """

    psf_fwhm_mm: tuple[float, float] = (0.4, 0.2)
    dynamic_range_db: float = 50.0
    gain_db: float = -29.0
    atten_db_per_cm: float = 0.8
    noise_amp: float = 0.07


@dataclass
class Band:
    """A roughly horizontal band (fascia, aponeurosis, bone surface, skin line).

    The upper edge is ``z(x) = top_mm + tan(tilt) * (x - xc) + 0.5 * curvature * (x - xc)**2``
    (mm, depth downwards); the lower edge lies ``thickness_mm`` below it.

    Attributes
    ----------
    top_mm, thickness_mm, tilt_deg, curvature_per_mm, xc_mm
        Geometry as above; a positive curvature bends the edges deeper away from
        ``xc_mm`` (a surface convex towards the probe).
    amp_db
        Diffuse echo level relative to the reference soft tissue (0 dB).
    specular
        Amplitude of the coherent (non-speckled) reflection.
    x_range_mm
        Optional lateral extent ``(x_min, x_max)``; ``None`` spans the image.
    """

    top_mm: float
    thickness_mm: float
    tilt_deg: float = 0.0
    curvature_per_mm: float = 0.0
    xc_mm: float = 0.0
    amp_db: float = 12.0
    specular: float = 2.5
    x_range_mm: tuple[float, float] | None = None

    def top(self, x_mm: np.ndarray | float) -> np.ndarray | float:
        """Depth of the upper edge at lateral position ``x_mm``."""
        dx = np.asarray(x_mm, dtype=np.float64) - self.xc_mm
        return self.top_mm + math.tan(math.radians(self.tilt_deg)) * dx + 0.5 * self.curvature_per_mm * dx * dx

    def bottom(self, x_mm: np.ndarray | float) -> np.ndarray | float:
        """Depth of the lower edge at lateral position ``x_mm``."""
        return self.top(x_mm) + self.thickness_mm


@dataclass
class Ellipse:
    """An ellipse in physical coordinates (mm); ``rotation_deg`` turns the major axis
    clockwise on the displayed image (depth axis pointing down)."""

    cx_mm: float
    cz_mm: float
    a_mm: float
    b_mm: float
    rotation_deg: float = 0.0

    def contour(self, n: int = 72) -> np.ndarray:
        """Return ``n`` points ``(x, z)`` in mm on the ellipse, counter-parametric order."""
        t = 2.0 * np.pi * np.arange(n) / n
        th = math.radians(self.rotation_deg)
        u = self.a_mm * np.cos(t)
        v = self.b_mm * np.sin(t)
        x = self.cx_mm + u * math.cos(th) - v * math.sin(th)
        z = self.cz_mm + u * math.sin(th) + v * math.cos(th)
        return np.stack([x, z], axis=1)

    @property
    def area_mm2(self) -> float:
        """Exact area ``pi * a * b``."""
        return math.pi * self.a_mm * self.b_mm

    @property
    def perimeter_mm(self) -> float:
        """Perimeter by dense numerical integration (relative error < 1e-9)."""
        t = np.linspace(0.0, 2.0 * np.pi, 20001)
        x = self.a_mm * np.cos(t)
        y = self.b_mm * np.sin(t)
        return float(np.sum(np.hypot(np.diff(x), np.diff(y))))

    def half_extent_x(self) -> float:
        """Half of the lateral extent of the (rotated) ellipse."""
        th = math.radians(self.rotation_deg)
        return math.hypot(self.a_mm * math.cos(th), self.b_mm * math.sin(th))

    def half_extent_z(self) -> float:
        """Half of the axial extent of the (rotated) ellipse."""
        th = math.radians(self.rotation_deg)
        return math.hypot(self.a_mm * math.sin(th), self.b_mm * math.cos(th))

    def grown(self, d_mm: float) -> "Ellipse":
        """The ellipse with both semi-axes enlarged by ``d_mm``."""
        return replace(self, a_mm=self.a_mm + d_mm, b_mm=self.b_mm + d_mm)


@dataclass
class NerveScene:
    """Everything random about one short-axis nerve scene.

    Attributes
    ----------
    shape_px
        Tissue region size ``(rows, columns)``.
    mm_per_px
        Isotropic pixel size in mm.
    nerve
        True nerve border (inner border of the epineurial rim).
    rim_width_mm
        Width of the hyperechoic rim lying just outside ``nerve``.
    fascicles
        ``(n, 3)`` array of fascicle circles ``(u, v, r)`` in nerve-normalised
        coordinates (the unit disc maps onto ``nerve``).
    vessel
        Anechoic vessel (circle) or ``None``.
    vessel_gap_mm
        Edge-to-edge lateral gap between the vessel and the outer rim.
    fasciae
        Fascia bands (flexor retinaculum, deep fascia).
    tendons
        Hyperechoic tendons in short axis.
    skin_mm, dermis_mm, subcut_mm
        Depths (mm) of the lower edges of the skin entry echo, dermis and
        subcutaneous layer.
    echo_db
        Echo levels (dB re. soft tissue) of ``interior``, ``fascicle``, ``rim``,
        ``tissue``, ``fat``, ``tendon``, ``vessel``; ``rim_specular`` and
        ``enhancement_db`` (posterior acoustic enhancement below the vessel).
    acoustics
        Imaging-system parameters.
    texture_seed
        Seed of all texture fields (kept fixed along a cine loop).
    """

    shape_px: tuple[int, int]
    mm_per_px: float
    nerve: Ellipse
    rim_width_mm: float
    fascicles: np.ndarray
    vessel: Ellipse | None
    vessel_gap_mm: float | None
    fasciae: list[Band]
    tendons: list[Ellipse]
    skin_mm: float
    dermis_mm: float
    subcut_mm: float
    echo_db: dict[str, float]
    acoustics: Acoustics
    texture_seed: int


@dataclass
class MuscleScene:
    """Everything random about one long-axis muscle scene.

    Attributes
    ----------
    shape_px, mm_per_px
        Tissue region size ``(rows, columns)`` and pixel size.
    skin_mm, dermis_mm
        Lower edges of the skin entry echo and dermis.
    superficial
        Superficial fascia band; its *lower* edge is the superficial inner edge.
    deep
        Deep aponeurosis (or bone cortex when ``bone``); its *upper* edge is the
        deep inner edge.
    bone
        Whether ``deep`` is a bone surface casting an acoustic shadow.
    deeper_fascia
        Optional further fascia below the deep aponeurosis (no bone only).
    muscle_db, deeper_db, fat_db
        Echo levels of the muscle belly, the deeper tissue and subcutaneous fat.
    muscle_atten_db_per_cm
        Extra attenuation inside the muscle belly (high in myopathic muscle).
    pennation_deg, fascicle_spacing_mm, fascicle_contrast_db
        Oblique perimysium lines ("striations") of the belly.
    shadow_level
        Amplitude transmission below the bone surface.
    acoustics, texture_seed
        As for :class:`NerveScene`.
    """

    shape_px: tuple[int, int]
    mm_per_px: float
    skin_mm: float
    dermis_mm: float
    superficial: Band
    deep: Band
    bone: bool
    deeper_fascia: Band | None
    muscle_db: float
    deeper_db: float
    fat_db: float
    muscle_atten_db_per_cm: float
    pennation_deg: float
    fascicle_spacing_mm: float
    fascicle_contrast_db: float
    shadow_level: float
    acoustics: Acoustics
    texture_seed: int


# --------------------------------------------------------------------------------------
# Physical grid, texture fields, coverage helpers
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# B-mode formation
# --------------------------------------------------------------------------------------


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


def sample_acoustics(rng: np.random.Generator, **overrides: Any) -> Acoustics:
    """Draw plausible imaging-system parameters.

    Parameters
    ----------
    rng
        Random generator.
    **overrides
        Any :class:`Acoustics` field to fix.

    Returns
    -------
    Acoustics
    """
    ac = Acoustics(
        psf_fwhm_mm=(float(rng.uniform(0.30, 0.50)), float(rng.uniform(0.15, 0.25))),
        dynamic_range_db=float(rng.uniform(48.0, 54.0)),
        gain_db=float(rng.uniform(-34.0, -30.5)),
        atten_db_per_cm=float(rng.uniform(0.3, 1.2)),
        noise_amp=float(rng.uniform(0.05, 0.09)),
    )
    return replace(ac, **overrides)


# --------------------------------------------------------------------------------------
# Nerve scenes
# --------------------------------------------------------------------------------------


def _sample_fascicles(rng: np.random.Generator, mean_axis_mm: float) -> np.ndarray:
    """Poisson-disc packing of round fascicles in the unit disc (normalised units)."""
    target = int(rng.integers(7, 16))
    out: list[tuple[float, float, float]] = []
    for _ in range(3000):
        if len(out) >= target:
            break
        r_mm = rng.uniform(0.22, 0.50)
        r = r_mm / mean_axis_mm
        rad = math.sqrt(rng.uniform(0.0, 1.0)) * (0.86 - r)
        if rad < 0:
            continue
        ang = rng.uniform(0.0, 2.0 * math.pi)
        u, v = rad * math.cos(ang), rad * math.sin(ang)
        gap = 0.12 / mean_axis_mm
        if all(math.hypot(u - p, v - q) > r + rr + gap for p, q, rr in out):
            out.append((u, v, r))
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def sample_nerve_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    csa_mm2: float | None = None,
    flattening: float | None = None,
    rotation_deg: float | None = None,
    rim_width_mm: float | None = None,
    depth_mm: float | None = None,
    vessel: bool = True,
    vessel_gap_mm: float | None = None,
    n_tendons: int | None = None,
    acoustics: Acoustics | None = None,
) -> NerveScene:
    """Draw a random short-axis nerve scene.

    Parameters
    ----------
    rng
        Random generator (all randomness comes from it).
    mm_per_px
        Pixel size in mm.
    shape_px
        Tissue region ``(rows, columns)``.
    csa_mm2
        True cross-sectional area (inside the rim); default uniform 5-15 mm².
    flattening
        Major/minor axis ratio; default uniform 1.2-2.2.
    rotation_deg
        Major-axis rotation; default a few degrees.
    rim_width_mm
        Epineurial rim width; default uniform 0.3-0.6 mm.
    depth_mm
        Depth of the nerve centre; default drawn to fit the image.
    vessel
        Add an anechoic vessel beside the nerve.
    vessel_gap_mm
        Gap between vessel and outer rim (>= 1.5 mm); default uniform 1.6-4 mm.
    n_tendons
        Number of hyperechoic tendons; default 0-2.
    acoustics
        Imaging parameters; default :func:`sample_acoustics`.

    Returns
    -------
    NerveScene
    """
    h_px, w_px = shape_px
    width_mm, depth_max = w_px * mm_per_px, h_px * mm_per_px
    ac = acoustics if acoustics is not None else sample_acoustics(rng)
    csa = float(csa_mm2) if csa_mm2 is not None else float(rng.uniform(5.0, 15.0))
    fl = float(flattening) if flattening is not None else float(rng.uniform(1.2, 2.2))
    rot = float(rotation_deg) if rotation_deg is not None else float(rng.uniform(-8.0, 8.0))
    rim = float(rim_width_mm) if rim_width_mm is not None else float(rng.uniform(0.3, 0.6))
    b = math.sqrt(csa / (math.pi * fl))
    a = fl * b
    skin = float(rng.uniform(0.3, 0.5))
    dermis = skin + float(rng.uniform(0.8, 1.3))
    subcut = dermis + float(rng.uniform(1.0, 2.5))
    outer = Ellipse(0.0, 0.0, a + rim, b + rim, rot)
    hz = outer.half_extent_z()
    hx = outer.half_extent_x()
    ret_t = float(rng.uniform(0.4, 0.8))
    z_min = subcut + ret_t + 0.6 + rng.uniform(0.4, 2.0) + hz
    z_hi = min(depth_max * 0.55, depth_max - hz - 3.0)
    if depth_mm is not None:
        cz = float(depth_mm)
    else:
        cz = float(rng.uniform(z_min, max(z_min + 0.1, min(z_min + 5.0, z_hi))))
    cx = float(rng.uniform(0.35, 0.65) * width_mm)
    nerve = Ellipse(cx, cz, a, b, rot)
    fascicles = _sample_fascicles(rng, math.sqrt(a * b))

    # fascia (flexor retinaculum) above the nerve, deep fascia below
    ret_top = float(rng.uniform(subcut + 0.2, max(subcut + 0.3, cz - hz - ret_t - 0.6)))
    fasciae = [
        Band(ret_top, ret_t, tilt_deg=float(rng.uniform(-3, 3)), curvature_per_mm=float(rng.uniform(-0.004, 0.004)),
             xc_mm=cx, amp_db=float(rng.uniform(10, 14)), specular=float(rng.uniform(2.0, 3.5)))
    ]
    deep_top = cz + hz + float(rng.uniform(1.5, 4.0))
    if deep_top + 1.0 < depth_max - 2.0:
        fasciae.append(Band(deep_top, float(rng.uniform(0.4, 0.9)), tilt_deg=float(rng.uniform(-4, 4)),
                            curvature_per_mm=float(rng.uniform(-0.003, 0.003)), xc_mm=cx,
                            amp_db=float(rng.uniform(8, 12)), specular=float(rng.uniform(1.0, 2.5))))

    ves: Ellipse | None = None
    gap: float | None = None
    if vessel:
        r_v = float(rng.uniform(1.0, 2.0))
        gap = float(vessel_gap_mm) if vessel_gap_mm is not None else float(rng.uniform(1.6, 4.0))
        gap = max(gap, 1.5)
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        vx = cx + side * (hx + gap + r_v)
        if not (r_v + 1.0 < vx < width_mm - r_v - 1.0):
            side = -side
            vx = cx + side * (hx + gap + r_v)
        vz = cz + float(rng.uniform(-1.2, 1.2))
        vz = max(vz, ret_top + ret_t + r_v + 0.5)
        ves = Ellipse(vx, vz, r_v, r_v, 0.0)

    tendons: list[Ellipse] = []
    nt = int(n_tendons) if n_tendons is not None else int(rng.integers(0, 3))
    for _ in range(200):
        if len(tendons) >= nt:
            break
        ta, tb = float(rng.uniform(1.5, 2.8)), float(rng.uniform(1.0, 1.8))
        t = Ellipse(float(rng.uniform(ta + 1, width_mm - ta - 1)),
                    float(rng.uniform(ret_top + ret_t + tb + 0.5, min(depth_max - tb - 2, cz + 8))),
                    ta, tb, float(rng.uniform(-15, 15)))
        others = [nerve.grown(rim)] + ([ves] if ves is not None else []) + tendons
        ok = all(math.hypot(t.cx_mm - o.cx_mm, t.cz_mm - o.cz_mm) > max(t.a_mm, t.b_mm) + max(o.a_mm, o.b_mm) + 1.0
                 for o in others)
        if ok and ves is not None:
            # keep tendons out of the vessel's posterior-enhancement column
            ok = abs(t.cx_mm - ves.cx_mm) > ves.a_mm + t.half_extent_x() + 0.5 or t.cz_mm < ves.cz_mm
        if ok:
            tendons.append(t)

    echo = {
        "tissue": 0.0,
        "fat": float(rng.uniform(-7.0, -4.0)),
        "interior": float(rng.uniform(-3.0, 0.5)),
        "septa_specular": float(rng.uniform(0.4, 0.8)),
        "fascicle": float(rng.uniform(-17.0, -12.0)),
        "rim": float(rng.uniform(13.0, 17.0)),
        "rim_specular": float(rng.uniform(2.5, 4.5)),
        "tendon": float(rng.uniform(3.0, 6.0)),
        "vessel": -40.0,
        "enhancement_db": float(rng.uniform(2.0, 4.0)),
    }
    return NerveScene(
        shape_px=shape_px, mm_per_px=float(mm_per_px), nerve=nerve, rim_width_mm=rim, fascicles=fascicles,
        vessel=ves, vessel_gap_mm=gap, fasciae=fasciae, tendons=tendons, skin_mm=skin, dermis_mm=dermis,
        subcut_mm=subcut, echo_db=echo, acoustics=ac, texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


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


def _nerve_maps(scene: NerveScene, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and specular maps of a nerve scene on ``grid``."""
    sd = scene.texture_seed
    e = scene.echo_db
    amp = (_db(e["tissue"] + 2.0 * grid.field(_seed(sd, 1), 2.0))
           * (1.0 + 0.9 * np.clip(grid.field(_seed(sd, 2), (0.25, 0.12)) - 1.3, 0.0, None))).astype(np.float32)
    spec = np.zeros_like(amp)
    subcut_bottom = scene.subcut_mm + 0.3 * np.sin(grid.x / 3.1 + (sd % 628) / 100.0)
    _skin_layers(grid, amp, spec, scene.skin_mm, scene.dermis_mm, subcut_bottom, e["fat"], sd)
    for i, band in enumerate(scene.fasciae):
        _add_band(grid, amp, spec, band, _seed(sd, 20 + i))
    for i, t in enumerate(scene.tendons):
        rs, cs = grid.window(t.cx_mm - t.a_mm - 1, t.cx_mm + t.a_mm + 1, t.cz_mm - t.a_mm - 1, t.cz_mm + t.a_mm + 1)
        X, Z = grid.X[:, cs], grid.Z[rs, :]
        cov = _ramp(_ellipse_sdf(X, Z, t), grid.h)
        fib = grid.field(_seed(sd, 30 + i), 0.1)[rs, cs]
        tex = _db(e["tendon"]) * (1.0 + 1.5 * np.clip(fib - 0.8, 0, None))
        _blend(amp[rs, cs], tex, cov)
        _blend(spec[rs, cs], 0.4, cov * np.clip(1.0 - np.abs(_ellipse_sdf(X, Z, t)) / 0.15, 0, 1))
    enh = np.ones_like(amp)
    if scene.vessel is not None:
        v = scene.vessel
        rs, cs = grid.window(v.cx_mm - v.a_mm - 1, v.cx_mm + v.a_mm + 1, v.cz_mm - v.a_mm - 1, v.cz_mm + v.a_mm + 1)
        cov = _ramp(_ellipse_sdf(grid.X[:, cs], grid.Z[rs, :], v), grid.h)
        _blend(amp[rs, cs], _db(e["vessel"]), cov)
        _blend(spec[rs, cs], 0.0, cov)
        lat = np.clip(1.0 - np.abs(grid.X - v.cx_mm) / v.a_mm, 0.0, 1.0) ** 0.5
        below = np.clip((grid.Z - v.cz_mm) / v.a_mm, 0.0, 1.0)
        enh = 1.0 + (_db(e["enhancement_db"]) - 1.0) * lat * below
    # nerve: rim then interior
    n = scene.nerve
    o = n.grown(scene.rim_width_mm)
    m = max(o.a_mm, o.b_mm) + 0.5
    rs, cs = grid.window(n.cx_mm - m, n.cx_mm + m, n.cz_mm - m, n.cz_mm + m)
    X, Z = grid.X[:, cs], grid.Z[rs, :]
    a_w, s_w = amp[rs, cs], spec[rs, cs]
    cov_o = _ramp(_ellipse_sdf(X, Z, o), grid.h)
    rim_var = grid.field(_seed(sd, 40), 0.5)[rs, cs]
    _blend(a_w, _db(e["rim"] + 1.5 * rim_var), cov_o)
    _blend(s_w, e["rim_specular"] * np.clip(1.0 + 0.25 * rim_var, 0.3, None), cov_o)
    cov_i = _ramp(_ellipse_sdf(X, Z, n), grid.h)
    th = math.radians(n.rotation_deg)
    dx, dz = X - n.cx_mm, Z - n.cz_mm
    un = (dx * math.cos(th) + dz * math.sin(th)) / n.a_mm
    vn = (-dx * math.sin(th) + dz * math.cos(th)) / n.b_mm
    interior = _db(e["interior"] + 1.5 * grid.field(_seed(sd, 41), 0.3)[rs, cs]) * np.ones_like(cov_i)
    scale = math.sqrt(n.a_mm * n.b_mm)
    septa = np.full_like(cov_i, e.get("septa_specular", 0.0))
    for (fu, fv, fr) in scene.fascicles:
        d = (np.sqrt((un - fu) ** 2 + (vn - fv) ** 2) - fr) * scale
        cf = _ramp(d, grid.h)
        _blend(interior, _db(e["fascicle"]), cf)
        _blend(septa, 0.0, cf)
    _blend(a_w, interior, cov_i)
    _blend(s_w, septa, cov_i)
    amp *= enh
    spec *= enh
    return amp, spec


def _nerve_truth(scene: NerveScene, grid: _Grid) -> dict[str, Any]:
    """Ground truth of a nerve scene in tissue-region pixel coordinates."""
    s = scene.mm_per_px
    dxm, dzm = grid.shift_mm
    n = scene.nerve
    cont = n.contour(72)
    cont_px = np.stack([(cont[:, 0] - dxm) / s, (cont[:, 1] - dzm) / s], axis=1)
    vessel = None
    if scene.vessel is not None:
        v = scene.vessel
        vessel = {
            "center_px": [round((v.cx_mm - dxm) / s, 3), round((v.cz_mm - dzm) / s, 3)],
            "radius_px": round(v.a_mm / s, 3),
            "radius_mm": round(v.a_mm, 4),
            "gap_to_rim_mm": round(float(scene.vessel_gap_mm), 4) if scene.vessel_gap_mm is not None else None,
        }
    return {
        "kind": "nerve",
        "mm_per_px": s,
        "csa_mm2": round(n.area_mm2, 4),
        "csa_px2": round(n.area_mm2 / s**2, 3),
        "perimeter_mm": round(n.perimeter_mm, 4),
        "major_axis_mm": round(2 * max(n.a_mm, n.b_mm), 4),
        "minor_axis_mm": round(2 * min(n.a_mm, n.b_mm), 4),
        "flattening_ratio": round(max(n.a_mm, n.b_mm) / min(n.a_mm, n.b_mm), 4),
        "semi_axes_mm": [round(n.a_mm, 4), round(n.b_mm, 4)],
        "rotation_deg": round(n.rotation_deg, 3),
        "rim_width_mm": round(scene.rim_width_mm, 4),
        "n_fascicles": int(len(scene.fascicles)),
        "center_px": [round((n.cx_mm - dxm) / s, 3), round((n.cz_mm - dzm) / s, 3)],
        "contour_px": [[round(float(x), 3), round(float(y), 3)] for x, y in cont_px],
        "vessel": vessel,
    }


def render_nerve_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    scene: NerveScene | None = None,
    **scene_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one short-axis nerve B-mode image of the tissue region.

    Parameters
    ----------
    rng
        Random generator; draws the scene (unless given) and the speckle.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    shape_px
        Tissue region ``(rows, columns)`` (ignored when ``scene`` is given).
    scene
        A scene from :func:`sample_nerve_scene`; drawn when ``None``.
    **scene_kwargs
        Passed to :func:`sample_nerve_scene` (``csa_mm2``, ``flattening``, ``vessel``...).

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` gray image of shape ``shape_px`` (tissue region only).
    truth : dict
        Geometry in tissue-region pixel coordinates: ``csa_mm2``, ``perimeter_mm``,
        ``major_axis_mm``, ``minor_axis_mm``, ``flattening_ratio``, ``center_px``,
        ``contour_px`` (72 points), ``vessel`` and more; plus ``echogenicity_mean`` /
        ``echogenicity_sd`` of this image inside the contour.
    """
    if scene is None:
        scene = sample_nerve_scene(rng, mm_per_px, shape_px=shape_px, **scene_kwargs)
    grid = _Grid(scene.shape_px, scene.mm_per_px)
    amp, spec = _nerve_maps(scene, grid)
    img = _form_bmode(amp, spec, grid, scene.acoustics, rng)
    truth = _nerve_truth(scene, grid)
    truth.update(nerve_echogenicity(img, truth["contour_px"]))
    return img, truth


def render_nerve_cine(
    rng: np.random.Generator,
    mm_per_px: float,
    n_frames: int = 10,
    *,
    shape_px: tuple[int, int] = (400, 400),
    scene: NerveScene | None = None,
    max_shift_px: float = 4.0,
    size_jitter: float = 0.03,
    rotation_jitter_deg: float = 2.0,
    speckle_correlation: float = 0.85,
    **scene_kwargs: Any,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Render a short cine loop of a nerve with small probe motion and deformation.

    The whole scene moves by a smooth random walk of at most ``max_shift_px``
    pixels; the nerve's semi-axes change by up to ``size_jitter`` (relative) and its
    rotation by up to ``rotation_jitter_deg``.  The speckle moves with the tissue
    and partly decorrelates between frames.

    Parameters
    ----------
    rng
        Random generator.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    n_frames
        Number of frames.
    shape_px
        Tissue region ``(rows, columns)``.
    scene
        Base scene; drawn with :func:`sample_nerve_scene` when ``None``.
    max_shift_px, size_jitter, rotation_jitter_deg
        Motion amplitude.
    speckle_correlation
        Correlation of the speckle between consecutive frames (0..1).
    **scene_kwargs
        Passed to :func:`sample_nerve_scene`.

    Returns
    -------
    frames : list of numpy.ndarray
        ``uint8`` tissue-region images.
    truths : list of dict
        Per-frame truth as in :func:`render_nerve_scene`.
    """
    if scene is None:
        scene = sample_nerve_scene(rng, mm_per_px, shape_px=shape_px, **scene_kwargs)
    k = SUPERSAMPLE
    t = np.linspace(0.0, 1.0, n_frames)
    ph = rng.uniform(0, 2 * np.pi, size=4)
    amp_sub = max_shift_px * k
    dxs = np.rint(amp_sub * np.sin(2 * np.pi * t * 0.9 + ph[0]) * rng.uniform(0.6, 1.0)).astype(int)
    dzs = np.rint(0.5 * amp_sub * np.sin(2 * np.pi * t * 1.3 + ph[1]) * rng.uniform(0.5, 1.0)).astype(int)
    scale = 1.0 + size_jitter * np.sin(2 * np.pi * t * 1.1 + ph[2])
    drot = rotation_jitter_deg * np.sin(2 * np.pi * t * 0.7 + ph[3])
    grid0 = _Grid(scene.shape_px, scene.mm_per_px)
    base = _scatterers(rng, grid0.padded_shape())
    rho = float(speckle_correlation)
    prev: np.ndarray | None = None
    frames: list[np.ndarray] = []
    truths: list[dict[str, Any]] = []
    for i in range(n_frames):
        grid = _Grid(scene.shape_px, scene.mm_per_px, shift_sub=(int(dzs[i]), int(dxs[i])))
        n0 = scene.nerve
        # the nerve's area changes by scale**2 while its shape is kept
        sc = replace(scene, nerve=replace(n0, a_mm=float(n0.a_mm * scale[i]), b_mm=float(n0.b_mm * scale[i]),
                                          rotation_deg=float(n0.rotation_deg + drot[i])))
        amp, spec = _nerve_maps(sc, grid)
        fixed = grid._crop(base)
        if prev is None:
            innov = fixed
        else:
            innov = rho * prev + math.sqrt(1 - rho * rho) * _scatterers(rng, (grid.hs, grid.ws))
        prev = innov
        scat = (0.7 * fixed + math.sqrt(1 - 0.49) * innov).astype(np.float32) if i else fixed
        img = _form_bmode(amp, spec, grid, scene.acoustics, rng, scat=scat)
        tr = _nerve_truth(sc, grid)
        tr["shift_px"] = [round(-grid.shift_mm[0] / scene.mm_per_px, 4) + 0.0,
                          round(-grid.shift_mm[1] / scene.mm_per_px, 4) + 0.0]
        tr.update(nerve_echogenicity(img, tr["contour_px"]))
        frames.append(img)
        truths.append(tr)
    return frames, truths


# --------------------------------------------------------------------------------------
# Muscle scenes
# --------------------------------------------------------------------------------------


def sample_muscle_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    bone: bool = False,
    tilt_deg: float | None = None,
    curvature: float | None = None,
    thickness_mm: float | None = None,
    subcutaneous_mm: float | None = None,
    muscle_db: float | None = None,
    myopathic: bool = False,
    acoustics: Acoustics | None = None,
) -> MuscleScene:
    """Draw a random long-axis muscle scene.

    Parameters
    ----------
    rng
        Random generator.
    mm_per_px
        Pixel size in mm.
    shape_px
        Tissue region ``(rows, columns)``.
    bone
        Put a bone surface with acoustic shadow instead of a deep aponeurosis.
    tilt_deg
        Tilt of the superficial fascia (the deep boundary differs by up to 1 degree);
        default uniform -2..2.
    curvature
        Curvature (1/mm) of the deep boundary, positive = convex towards the probe
        (edges deeper than the centre); the superficial fascia gets 40 % of it.
        Default: 0.002-0.006 for bone, -0.002..0.002 otherwise.
    thickness_mm
        Vertical distance between the inner edges at the centre; default drawn to fit
        (8-25 mm).
    subcutaneous_mm
        Depth of the superficial fascia's upper edge at the centre; default 2-6 mm.
    muscle_db
        Echo level of the belly re. soft tissue; default -6..-2 dB (+1..+4 dB when
        ``myopathic``).
    myopathic
        Bright, more attenuating, less structured muscle.
    acoustics
        Imaging parameters; default :func:`sample_acoustics`.

    Returns
    -------
    MuscleScene
    """
    h_px, w_px = shape_px
    depth_max = h_px * mm_per_px
    ac = acoustics if acoustics is not None else sample_acoustics(rng)
    xc = (w_px - 1) / 2.0 * mm_per_px
    skin = float(rng.uniform(0.3, 0.5))
    dermis = skin + float(rng.uniform(0.8, 1.4))
    subcut = float(subcutaneous_mm) if subcutaneous_mm is not None else float(rng.uniform(2.0, 6.0))
    subcut = max(subcut, dermis + 0.5)
    t_sf = float(rng.uniform(0.5, 1.0))
    tilt = float(tilt_deg) if tilt_deg is not None else float(rng.uniform(-2.0, 2.0))
    curv = float(curvature) if curvature is not None else (
        float(rng.uniform(0.002, 0.006)) if bone else float(rng.uniform(-0.002, 0.002)))
    room = depth_max - (subcut + t_sf) - (7.0 if bone else 5.0)
    if thickness_mm is not None:
        thick = float(thickness_mm)
    else:
        if room < 3.0:
            raise ValueError(f"a {depth_max:.1f} mm deep image leaves no room for a muscle")
        hi = min(25.0, room)
        thick = float(rng.uniform(min(8.0, 0.6 * hi), hi))
    if thick > room + 1e-9:
        raise ValueError(f"thickness {thick:.1f} mm does not fit a {depth_max:.1f} mm deep image")
    sup = Band(subcut, t_sf, tilt_deg=tilt, curvature_per_mm=0.4 * curv, xc_mm=xc,
               amp_db=float(rng.uniform(11, 15)), specular=float(rng.uniform(2.0, 3.5)))
    deep_tilt = tilt + float(rng.uniform(-1.0, 1.0))
    if bone:
        deep = Band(subcut + t_sf + thick, float(rng.uniform(0.8, 1.5)), tilt_deg=deep_tilt, curvature_per_mm=curv,
                    xc_mm=xc, amp_db=float(rng.uniform(18, 22)), specular=float(rng.uniform(8.0, 12.0)))
        deeper = None
    else:
        deep = Band(subcut + t_sf + thick, float(rng.uniform(0.6, 1.2)), tilt_deg=deep_tilt, curvature_per_mm=curv,
                    xc_mm=xc, amp_db=float(rng.uniform(11, 15)), specular=float(rng.uniform(2.0, 3.5)))
        dz = float(rng.uniform(4.0, 9.0))
        deeper = None
        if deep.top_mm + deep.thickness_mm + dz + 1 < depth_max - 1:
            deeper = Band(deep.top_mm + deep.thickness_mm + dz, float(rng.uniform(0.4, 0.9)),
                          tilt_deg=deep_tilt + float(rng.uniform(-2, 2)), xc_mm=xc,
                          amp_db=float(rng.uniform(8, 12)), specular=float(rng.uniform(1.0, 2.0)))
    if muscle_db is not None:
        mdb = float(muscle_db)
    else:
        mdb = float(rng.uniform(-1.0, 3.0)) if myopathic else float(rng.uniform(-9.0, -5.0))
    return MuscleScene(
        shape_px=shape_px, mm_per_px=float(mm_per_px), skin_mm=skin, dermis_mm=dermis, superficial=sup, deep=deep,
        bone=bool(bone), deeper_fascia=deeper, muscle_db=mdb, deeper_db=float(rng.uniform(-7.0, -3.0)),
        fat_db=float(rng.uniform(-8.0, -4.0)),
        muscle_atten_db_per_cm=float(rng.uniform(2.0, 3.5)) if myopathic else float(rng.uniform(0.0, 0.8)),
        pennation_deg=float(rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 25.0)),
        fascicle_spacing_mm=float(rng.uniform(0.8, 1.6)),
        fascicle_contrast_db=float(rng.uniform(3.0, 6.0)) if myopathic else float(rng.uniform(10.0, 14.0)),
        shadow_level=float(rng.uniform(0.02, 0.05)), acoustics=ac, texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _striations(grid: _Grid, angle_deg: float, spacing: float, seed: list[int]) -> np.ndarray:
    """Thin, broken, wavy oblique lines (0..1) - perimysium of a muscle in long axis."""
    th = math.radians(angle_deg)
    wob = 0.3 * grid.field([*seed, 1], (4.0, 2.0))
    u = (-grid.X * math.sin(th) + grid.Z * math.cos(th)) / spacing + wob
    d = np.abs(u - np.rint(u)) * spacing  # mm to the nearest line
    lines = np.exp(-(d**2) / (2 * 0.05**2))
    breaks = np.clip(0.5 * grid.field([*seed, 2], (4.0, 0.8)) + 0.75, 0.0, 1.0) ** 1.5
    return lines * breaks


def _muscle_maps(scene: MuscleScene, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amplitude, specular and extra-attenuation maps of a muscle scene."""
    sd = scene.texture_seed
    Z, h = grid.Z, grid.h
    sup, deep = scene.superficial, scene.deep
    y_s = np.asarray(sup.top(grid.x))[None, :]
    y_si = y_s + sup.thickness_mm  # superficial inner edge
    y_d = np.asarray(deep.top(grid.x))[None, :]  # deep inner edge
    y_db = y_d + deep.thickness_mm
    het = grid.field(_seed(sd, 1), 2.0)
    # deeper tissue (below the deep band)
    amp = (_db(scene.deeper_db + 1.5 * het)
           * (1.0 + 0.5 * _db(scene.fascicle_contrast_db) * _striations(grid, -scene.pennation_deg * 0.7, 1.3,
                                                                         _seed(sd, 2)))).astype(np.float32)
    spec = np.zeros_like(amp)
    # muscle belly
    stri = _striations(grid, scene.pennation_deg, scene.fascicle_spacing_mm, _seed(sd, 3))
    belly = _db(scene.muscle_db + 1.5 * grid.field(_seed(sd, 4), 2.5)) * (
        1.0 + (_db(scene.fascicle_contrast_db) - 1.0) * stri)
    cov_belly = np.clip((Z - y_si) / h + 0.5, 0, 1) * np.clip((y_d - Z) / h + 0.5, 0, 1)
    _blend(amp, belly, cov_belly)
    _blend(spec, _db(scene.muscle_db + scene.fascicle_contrast_db - 6.0) * stri, cov_belly)
    # above the superficial fascia: skin, dermis, fat
    _skin_layers(grid, amp, spec, scene.skin_mm, scene.dermis_mm, y_s[0], scene.fat_db, sd)
    _add_band(grid, amp, spec, sup, _seed(sd, 5))
    if scene.bone:
        cov = _band_cov(grid, deep)
        var = 1.0 + 0.2 * grid.field(_seed(sd, 6), (2.0, 0.3))
        _blend(amp, _db(deep.amp_db) * var, cov)
        _blend(spec, deep.specular * var, cov)
        # acoustic shadow: transmission drops through the cortex
        depth_in = np.clip((Z - y_d) / max(deep.thickness_mm, 1e-3), 0.0, 1.0)
        trans = 1.0 - (1.0 - scene.shadow_level) * depth_in ** 1.5
        amp = (amp * np.sqrt(trans) * np.where(Z > y_db, np.sqrt(trans), 1.0)).astype(np.float32)
        spec = (spec * np.sqrt(trans)).astype(np.float32)
    else:
        _add_band(grid, amp, spec, deep, _seed(sd, 6))
        if scene.deeper_fascia is not None:
            _add_band(grid, amp, spec, scene.deeper_fascia, _seed(sd, 7))
    # extra attenuation accumulated inside the belly (dB)
    path_cm = np.clip(np.minimum(Z, y_d) - y_si, 0.0, None) / 10.0
    extra = (scene.muscle_atten_db_per_cm * path_cm).astype(np.float32)
    return amp, spec, extra


def _min_dist_to_curve(px: float, pz: float, band: Band, x_lo: float, x_hi: float) -> float:
    xs = np.linspace(x_lo, x_hi, 40001)
    zs = np.asarray(band.top(xs))
    return float(np.min(np.hypot(xs - px, zs - pz)))


def _muscle_truth(scene: MuscleScene) -> dict[str, Any]:
    """Ground truth of a muscle scene in tissue-region pixel coordinates."""
    s = scene.mm_per_px
    w_px = scene.shape_px[1]
    sup, deep = scene.superficial, scene.deep
    xc_px = (w_px - 1) / 2.0
    xc = xc_px * s

    def y_sup(x_mm: np.ndarray | float) -> np.ndarray | float:
        return sup.bottom(x_mm)

    lo, hi = -0.5 * s, (w_px - 0.5) * s
    span = (hi - lo)
    perp_c = _min_dist_to_curve(xc, float(y_sup(xc)), deep, lo - span, hi + span)
    cols = np.arange(w_px)
    central_half = cols[((cols + 0.5) >= 0.25 * w_px) & ((cols + 0.5) <= 0.75 * w_px)]
    perps = [_min_dist_to_curve(c * s, float(y_sup(c * s)), deep, lo - span, hi + span) for c in central_half[::1]]
    xs_line = np.linspace(0, w_px - 1, 21)
    return {
        "kind": "muscle",
        "mm_per_px": s,
        "thickness_mm": round(perp_c, 4),
        "thickness_px": round(perp_c / s, 3),
        "thickness_mean_central_half_mm": round(float(np.mean(perps)), 4),
        "vertical_gap_at_center_mm": round(float(deep.top(xc) - y_sup(xc)), 4),
        "inner_edges_px_at_center": [round(float(y_sup(xc)) / s, 3), round(float(deep.top(xc)) / s, 3)],
        "center_x_px": round(xc_px, 3),
        "inner_edge_superficial_px": [[round(float(x), 3), round(float(y_sup(x * s)) / s, 3)] for x in xs_line],
        "inner_edge_deep_px": [[round(float(x), 3), round(float(deep.top(x * s)) / s, 3)] for x in xs_line],
        "tilt_deg": round(sup.tilt_deg, 3),
        "deep_tilt_deg": round(deep.tilt_deg, 3),
        "curvature_per_mm": round(deep.curvature_per_mm, 5),
        "bone": scene.bone,
        "deep_boundary": "bone surface" if scene.bone else "deep aponeurosis",
        "subcutaneous_thickness_mm": round(float(sup.top(xc)), 4),
        "superficial_fascia_thickness_mm": round(sup.thickness_mm, 4),
        "deep_band_thickness_mm": round(deep.thickness_mm, 4),
    }


def muscle_roi_mask(
    shape: tuple[int, int],
    tissue_region_px: Sequence[int],
    inner_superficial: Any,
    inner_deep: Any,
    mm_per_px: float,
    margin_mm: float = 0.5,
    width_fraction: float = 0.6,
) -> np.ndarray:
    """Echogenicity ROI of CONTRACT.md section 4 as a boolean mask.

    A pixel (centre ``(x, y)``) belongs to the ROI when its column lies in the central
    ``width_fraction`` of the tissue region (``0.2 W <= x - x0 + 0.5 <= 0.8 W``) and it
    is at least ``margin_mm`` (measured perpendicular to the local edge direction)
    below the superficial inner edge and above the deep inner edge.

    Parameters
    ----------
    shape
        Image shape ``(rows, cols)``.
    tissue_region_px
        ``[x0, y0, x1, y1]`` inclusive.
    inner_superficial, inner_deep
        Callables ``f(x_px) -> y_px`` giving the inner edges in the same pixel frame.
    mm_per_px
        Pixel size used to convert ``margin_mm``.
    margin_mm, width_fraction
        As in the contract.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``shape``.
    """
    x0, y0, x1, y1 = [int(v) for v in tissue_region_px]
    w = x1 - x0 + 1
    mask = np.zeros(shape, dtype=bool)
    f = (1.0 - width_fraction) / 2.0
    m_px = margin_mm / mm_per_px
    ys = np.arange(shape[0])
    for x in range(x0, x1 + 1):
        rel = x - x0 + 0.5
        if rel < f * w or rel > (1.0 - f) * w:
            continue
        ys_s = float(inner_superficial(x))
        yd = float(inner_deep(x))
        sl_s = (float(inner_superficial(x + 0.5)) - float(inner_superficial(x - 0.5)))
        sl_d = (float(inner_deep(x + 0.5)) - float(inner_deep(x - 0.5)))
        top = ys_s + m_px * math.sqrt(1 + sl_s**2)
        bot = yd - m_px * math.sqrt(1 + sl_d**2)
        sel = (ys >= top) & (ys <= bot) & (ys >= y0) & (ys <= y1)
        mask[sel, x] = True
    return mask


def muscle_echogenicity(luma: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, SD (population) and median of ``luma`` inside ``mask``."""
    v = luma[mask].astype(np.float64)
    return {
        "echogenicity_mean": round(float(v.mean()), 4),
        "echogenicity_sd": round(float(v.std()), 4),
        "echogenicity_median": round(float(np.median(v)), 4),
        "echogenicity_roi_pixels": int(v.size),
    }


def render_muscle_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    bone: bool = False,
    tilt_deg: float | None = None,
    curvature: float | None = None,
    scene: MuscleScene | None = None,
    **scene_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one long-axis muscle B-mode image of the tissue region.

    Parameters
    ----------
    rng
        Random generator; draws the scene (unless given) and the speckle.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    shape_px
        Tissue region ``(rows, columns)``.
    bone
        Bone surface with acoustic shadow instead of a deep aponeurosis.
    tilt_deg, curvature
        Fascia tilt (degrees) and deep-boundary curvature (1/mm); see
        :func:`sample_muscle_scene`.
    scene
        A scene from :func:`sample_muscle_scene`; drawn when ``None``.
    **scene_kwargs
        Passed to :func:`sample_muscle_scene` (``thickness_mm``, ``myopathic``...).

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` gray image of shape ``shape_px``.
    truth : dict
        ``thickness_mm``, ``thickness_mean_central_half_mm``,
        ``inner_edges_px_at_center``, ``tilt_deg``, ``bone``,
        ``subcutaneous_thickness_mm`` and the ROI echogenicity of this image, in
        tissue-region pixel coordinates (tissue region = whole image).
    """
    if scene is None:
        scene = sample_muscle_scene(rng, mm_per_px, shape_px=shape_px, bone=bone, tilt_deg=tilt_deg,
                                    curvature=curvature, **scene_kwargs)
    grid = _Grid(scene.shape_px, scene.mm_per_px)
    amp, spec, extra = _muscle_maps(scene, grid)
    img = _form_bmode(amp, spec, grid, scene.acoustics, rng, extra_atten_db=extra)
    truth = _muscle_truth(scene)
    truth["_scene"] = scene
    h, w = scene.shape_px
    truth.update(_muscle_roi_stats(img.astype(np.float64), scene, (0, 0, w - 1, h - 1), (0, 0)))
    return img, _public(truth)


def _muscle_roi_stats(luma: np.ndarray, scene: MuscleScene, region: Sequence[int],
                      origin: tuple[int, int]) -> dict[str, float]:
    s = scene.mm_per_px
    ox, oy = origin
    mask = muscle_roi_mask(
        luma.shape, region,
        lambda x: float(scene.superficial.bottom((x - ox) * s)) / s + oy,
        lambda x: float(scene.deep.top((x - ox) * s)) / s + oy,
        s,
    )
    return muscle_echogenicity(luma, mask)


def _public(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in truth.items() if not k.startswith("_")}


# --------------------------------------------------------------------------------------
# Echogenicity helpers
# --------------------------------------------------------------------------------------


def frame_luma(frame: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B) of a gray or RGB frame, float64."""
    f = np.asarray(frame)
    if f.ndim == 2:
        return f.astype(np.float64)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def contour_mask(contour_px: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centre lies inside the polygon ``contour_px``.

    Parameters
    ----------
    contour_px
        Closed polygon ``[[x, y], ...]`` (pixel centres at integer coordinates).
    shape
        ``(rows, cols)`` of the mask.

    Returns
    -------
    numpy.ndarray
        Boolean mask (the one used for ``echogenicity_*`` of nerves).
    """
    c = np.asarray(contour_px, dtype=np.float64)
    mask = np.zeros(shape[:2], dtype=bool)
    rr, cc = _sk_polygon(c[:, 1], c[:, 0], shape=shape[:2])
    mask[rr, cc] = True
    return mask


def nerve_echogenicity(luma: np.ndarray, contour_px: Sequence[Sequence[float]]) -> dict[str, float]:
    """Mean and SD of ``luma`` over pixels whose centre lies inside ``contour_px``.

    Parameters
    ----------
    luma
        2-D gray/luma image.
    contour_px
        Closed polygon ``[[x, y], ...]`` in the image's pixel coordinates.

    Returns
    -------
    dict
        ``echogenicity_mean``, ``echogenicity_sd`` (population SD), ``echogenicity_pixels``.
    """
    c = np.asarray(contour_px, dtype=np.float64)
    rr, cc = _sk_polygon(c[:, 1], c[:, 0], shape=luma.shape[:2])
    v = np.asarray(luma, dtype=np.float64)[rr, cc]
    return {
        "echogenicity_mean": round(float(v.mean()), 4),
        "echogenicity_sd": round(float(v.std()), 4),
        "echogenicity_pixels": int(v.size),
    }


# --------------------------------------------------------------------------------------
# Frame composition (burned-in annotations) and colour Doppler
# --------------------------------------------------------------------------------------


def truth_to_frame(truth: dict[str, Any], origin_px: tuple[int, int]) -> dict[str, Any]:
    """Shift pixel coordinates of a scene truth from tissue-region to frame coordinates.

    Parameters
    ----------
    truth
        Truth from a ``render_*`` function.
    origin_px
        ``(x0, y0)`` of the tissue region in the frame.

    Returns
    -------
    dict
        A deep copy with ``center_px``, ``contour_px``, ``vessel.center_px``,
        ``inner_edges_px_at_center``, ``center_x_px`` and the inner-edge polylines shifted.
    """
    ox, oy = origin_px
    t = copy.deepcopy(truth)

    def pt(p: Sequence[float]) -> list[float]:
        return [round(p[0] + ox, 3), round(p[1] + oy, 3)]

    if "center_px" in t:
        t["center_px"] = pt(t["center_px"])
    if "contour_px" in t:
        t["contour_px"] = [pt(p) for p in t["contour_px"]]
    if t.get("vessel"):
        t["vessel"]["center_px"] = pt(t["vessel"]["center_px"])
    if "inner_edges_px_at_center" in t:
        t["inner_edges_px_at_center"] = [round(v + oy, 3) for v in t["inner_edges_px_at_center"]]
    if "center_x_px" in t:
        t["center_x_px"] = round(t["center_x_px"] + ox, 3)
    for key in ("inner_edge_superficial_px", "inner_edge_deep_px"):
        if key in t:
            t[key] = [pt(p) for p in t[key]]
    return t


def compose_frame(
    tissue: np.ndarray,
    origin_px: tuple[int, int],
    *,
    mm_per_px: float,
    text_lines: Sequence[str] = (),
    right_text: Sequence[str] = (),
    focus_depth_mm: float | None = None,
    frame_shape: tuple[int, int] = FRAME_SHAPE,
    rgb: bool = False,
    color_bar: bool = False,
) -> np.ndarray:
    """Place a tissue image in a black scanner frame with burned-in annotations.

    Outside the tissue region only black, white text (top left / top right), depth
    tick dots along the right edge of the tissue region (every 5 mm, larger every
    10 mm), a ``>`` focus marker on the left and a vertical gray-scale bar near the
    right edge of the frame are drawn (plus an optional colour-velocity bar).

    Parameters
    ----------
    tissue
        ``uint8`` tissue image (rows, cols).
    origin_px
        ``(x0, y0)`` of the tissue region in the frame.
    mm_per_px
        Pixel size (for the depth ticks).
    text_lines, right_text
        Lines of text at the top left / top right.
    focus_depth_mm
        Depth of the focus marker; default 40 % of the image depth.
    frame_shape
        ``(rows, cols)`` of the frame.
    rgb
        Return an ``(rows, cols, 3)`` RGB frame (gray replicated).
    color_bar
        Draw a red/blue colour-velocity bar beside the gray bar.

    Returns
    -------
    numpy.ndarray
        ``uint8`` frame.
    """
    rows, cols = frame_shape
    h, w = tissue.shape
    x0, y0 = origin_px
    if x0 < 30 or y0 < 58 or x0 + w + 20 > cols - 40 or y0 + h > rows:
        raise ValueError("tissue region does not leave room for the annotations")
    frame = np.zeros((rows, cols, 3), np.uint8)
    frame[y0 : y0 + h, x0 : x0 + w] = tissue[..., None]
    white = (255, 255, 255)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, line in enumerate(text_lines):
        cv2.putText(frame, line, (10, 17 + 17 * i), font, 0.45, white, 1, cv2.LINE_AA)
    for i, line in enumerate(right_text):
        (tw, _), _ = cv2.getTextSize(line, font, 0.42, 1)
        cv2.putText(frame, line, (cols - 12 - tw, 17 + 16 * i), font, 0.42, white, 1, cv2.LINE_AA)
    # depth ticks
    xt = x0 + w + 7
    step = 5.0 / mm_per_px
    n = int(math.floor((h - 1) / step)) + 1
    for i in range(n):
        y = int(round(y0 + i * step))
        r = 2 if i % 2 == 0 else 1
        frame[y - r + 1 : y + r, xt - r + 1 : xt + r] = 255
    # focus marker
    fd = focus_depth_mm if focus_depth_mm is not None else 0.4 * h * mm_per_px
    yf = int(round(y0 + fd / mm_per_px))
    cv2.polylines(frame, [np.array([[x0 - 16, yf - 4], [x0 - 11, yf], [x0 - 16, yf + 4]], np.int32)], False,
                  white, 1, cv2.LINE_AA)
    # gray bar
    bx = cols - 30
    ramp = np.linspace(255, 0, 256).round().astype(np.uint8)
    frame[y0 : y0 + 256, bx : bx + 10] = ramp[:, None, None]
    if color_bar:
        vals = np.linspace(1.0, -1.0, 160)
        bar = np.stack([_velocity_rgb(v) for v in vals]).astype(np.uint8)
        frame[y0 + 290 : y0 + 450, bx : bx + 10] = bar[:, None, :]
        for txt, yy in (("+18", y0 + 284), ("-18", y0 + 466)):
            cv2.putText(frame, txt, (bx - 20, yy), font, 0.38, white, 1, cv2.LINE_AA)
    return frame if rgb else frame[..., 0].copy()


def _velocity_rgb(v: float) -> tuple[int, int, int]:
    """Colour-flow map: red/yellow towards the probe (v > 0), blue/cyan away."""
    q = min(abs(v), 1.0)
    if v >= 0:
        return int(round(90 + 165 * q)), int(round(200 * q**2)), 0
    return 0, int(round(200 * q**2)), int(round(110 + 145 * q))


def paint_color_doppler(
    frame_rgb: np.ndarray,
    vessel_center_px: Sequence[float],
    vessel_radius_px: float,
    rng: np.random.Generator,
    *,
    box_px: Sequence[int],
    vmax: float = 1.12,
    fill: float = 0.85,
) -> int:
    """Paint colour-flow pixels over part of a vessel lumen (in place).

    Laminar (parabolic) flow towards the probe is shown in red/yellow; where it
    exceeds the Nyquist limit (``vmax > 1``) it aliases to blue/cyan.  Pixels are
    painted only inside ``fill`` x the lumen radius and inside ``box_px``.

    Parameters
    ----------
    frame_rgb
        ``(rows, cols, 3)`` ``uint8`` frame, modified in place.
    vessel_center_px, vessel_radius_px
        Lumen in frame pixel coordinates.
    rng
        Random generator (velocity noise).
    box_px
        Colour box ``[x0, y0, x1, y1]`` inclusive.
    vmax
        Peak velocity relative to the Nyquist velocity.
    fill
        Fraction of the lumen radius that receives colour.

    Returns
    -------
    int
        Number of coloured pixels.
    """
    cx, cy = vessel_center_px
    x0, y0, x1, y1 = box_px
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    r = np.hypot(xx - cx, yy - cy) / vessel_radius_px
    v = vmax * (1.0 - r**2) + rng.normal(0.0, 0.08, size=r.shape)
    sel = (r < fill) & (v > 0.15)
    v_alias = np.where(v > 1.0, v - 2.0, v)
    count = 0
    for y, x, vv in zip(yy[sel], xx[sel], v_alias[sel]):
        frame_rgb[y, x] = _velocity_rgb(float(vv))
        count += 1
    return count


def doppler_palette() -> np.ndarray:
    """The ``(256, 3)`` lookup table of ``PALETTE COLOR`` Doppler files.

    Indices 0-191 are a gray ramp (0-255); 192-223 the velocities away from the
    probe (blue/cyan, -1 to -0.15 of the Nyquist velocity) and 224-255 those
    towards it (red/yellow, 0.15 to 1), in the colours of :func:`paint_color_doppler`.
    """
    lut = np.zeros((256, 3), np.uint8)
    lut[:192] = np.round(np.arange(192) * 255.0 / 191.0).astype(np.uint8)[:, None]
    velocities = np.concatenate([np.linspace(-1.0, -0.15, 32), np.linspace(0.15, 1.0, 32)])
    lut[192:] = np.array([_velocity_rgb(float(v)) for v in velocities], dtype=np.uint8)
    return lut


def rgb_to_palette(frames_rgb: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Palette indices of RGB pixels: gray pixels to the nearest gray entry, colour to the nearest colour.

    ``lut`` is laid out as :func:`doppler_palette` (gray ramp in 0-191, colours in 192-255).
    """
    rgb = np.asarray(frames_rgb)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    gray = (flat.max(axis=1) - flat.min(axis=1)) == 0
    out = np.empty(len(flat), np.uint8)
    out[gray] = np.round(flat[gray, 0] * 191.0 / 255.0).astype(np.uint8)
    colours = lut[192:].astype(np.int32)
    if (~gray).any():
        d = ((flat[~gray, None, :] - colours[None, :, :]) ** 2).sum(axis=2)
        out[~gray] = (192 + d.argmin(axis=1)).astype(np.uint8)
    return out.reshape(rgb.shape[:-1])


#: Pulse Repetition Frequency (Hz) written into the generated Doppler files.
DOPPLER_PRF_HZ = 1500


def _paint_flow_disc(
    frame_rgb: np.ndarray, centre: Sequence[float], radius: float, rng: np.random.Generator, *, sign: float
) -> np.ndarray:
    """Paint a small vessel's colour flow (parabolic profile, velocity noise) in place; return its mask."""
    cx, cy = centre
    rows, cols = frame_rgb.shape[:2]
    y0, y1 = max(0, int(math.floor(cy - radius)) - 1), min(rows, int(math.ceil(cy + radius)) + 2)
    x0, x1 = max(0, int(math.floor(cx - radius)) - 1), min(cols, int(math.ceil(cx + radius)) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = np.hypot(xx - cx, yy - cy) / radius
    sel = r <= 1.0
    v = np.clip(0.35 + 0.55 * (1.0 - r**2) + rng.normal(0.0, 0.06, size=r.shape), 0.16, 1.0)
    mask = np.zeros((rows, cols), dtype=bool)
    for y, x, vv in zip(yy[sel], xx[sel], v[sel]):
        frame_rgb[y, x] = _velocity_rgb(float(sign * vv))
        mask[y, x] = True
    return mask


def make_doppler_nerve_case(
    seed: int,
    *,
    n_intraneural: int | None = None,
    n_extraneural: int | None = None,
    mm_per_px: float | None = None,
    vessel_radius_px: tuple[float, float] = (2.0, 4.5),
) -> dict[str, Any]:
    """A colour-Doppler short-axis nerve frame with known flow inside and outside the nerve.

    The B-mode scene (nerve beside an artery) is rendered as for the sample data;
    ``n_intraneural`` small vessels (radius ``vessel_radius_px``, so at least 4 px
    across) are painted as colour flow inside the nerve, at least 3 px from its
    border and 3 px from each other; the artery beside the nerve and
    ``n_extraneural`` further small vessels outside it (at least 4 px from the
    border) carry flow that must not be counted. The colour box (a Region Data
    Type 2 item) covers the nerve and the artery.

    Returns
    -------
    dict
        ``frame`` (RGB ``uint8``, with flow), ``grey`` (the same frame without
        any flow), ``regions`` (tissue region and colour box), ``origin_px``,
        ``mm_per_px`` and ``truth``: the nerve (``contour_px``, ``csa_mm2``,
        ``nerve_px``), the flow (``flow_mask``: every painted pixel;
        ``intraneural_px``; ``vascularity_index`` in %; ``vessel_count``;
        ``vascularity_grade``; the vessels painted) and ``colour_box_px``.
    """
    rng = np.random.default_rng([20250314, 19, int(seed)])
    scale = float(mm_per_px) if mm_per_px is not None else float(rng.choice([0.06, 0.07, 0.08]))
    x0, y0, w, h = _layout(rng)
    scene = sample_nerve_scene(rng, scale, shape_px=(h, w), vessel=True, csa_mm2=float(rng.uniform(8.0, 16.0)),
                               flattening=float(rng.uniform(1.2, 1.8)))
    tissue, tr = render_nerve_scene(rng, scale, scene=scene)
    truth = truth_to_frame(tr, (x0, y0))
    left = [_DEVICE, f"D {h * scale / 10:.1f}cm  G 52", "R MEDIAN NERVE WRIST"]
    right = ["MI 0.9  TIs 0.1", f"CF 6.2MHz PRF {DOPPLER_PRF_HZ / 1000:.1f}k"]
    grey = compose_frame(tissue, (x0, y0), mm_per_px=scale, text_lines=left, right_text=right, rgb=True, color_bar=True)
    frame = grey.copy()
    shape = frame.shape[:2]
    contour = np.asarray(truth["contour_px"], dtype=np.float64)
    nerve = contour_mask(contour, shape)
    # distance (px) of every pixel centre from the nerve border, inside and outside
    inside_dist = cv2.distanceTransform(nerve.astype(np.uint8), cv2.DIST_L2, 5)
    outside_dist = cv2.distanceTransform((~nerve).astype(np.uint8), cv2.DIST_L2, 5)

    ves = truth["vessel"]
    vcx, vcy = ves["center_px"]
    rv = float(ves["radius_px"])
    cx0, cy0 = contour.min(axis=0)
    cx1, cy1 = contour.max(axis=0)
    bx0 = max(x0, int(math.floor(min(cx0, vcx - rv) - 15)))
    bx1 = min(x0 + w - 1, int(math.ceil(max(cx1, vcx + rv) + 15)))
    by0 = max(y0, int(math.floor(min(cy0, vcy - rv) - 15)))
    by1 = min(y0 + h - 1, int(math.ceil(max(cy1, vcy + rv) + 15)))
    box = [bx0, by0, bx1, by1]

    flow = np.zeros(shape, dtype=bool)
    vessels: list[dict[str, Any]] = []
    artery = np.zeros(shape, dtype=bool)
    n_art = paint_color_doppler(frame, (vcx, vcy), rv, rng, box_px=box)
    artery |= np.any(frame != grey, axis=2)
    flow |= artery
    vessels.append({"where": "beside", "center_px": [round(vcx, 3), round(vcy, 3)], "radius_px": round(rv, 3),
                    "pixels": int(n_art)})

    n_in = int(n_intraneural) if n_intraneural is not None else int(rng.integers(0, 6))
    n_out = int(n_extraneural) if n_extraneural is not None else int(rng.integers(0, 3))
    placed: list[tuple[float, float, float]] = []

    def place(inside: bool) -> tuple[float, float, float] | None:
        for _ in range(400):
            r = float(rng.uniform(*vessel_radius_px))
            if inside:
                ys, xs = np.nonzero(inside_dist >= r + 3.0)
            else:
                region = (outside_dist >= r + 4.0) & ~cv2.dilate(artery.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
                region[:by0 + int(r) + 2] = False
                region[by1 - int(r) - 1:] = False
                region[:, :bx0 + int(r) + 2] = False
                region[:, bx1 - int(r) - 1:] = False
                ys, xs = np.nonzero(region)
            if len(xs) == 0:
                return None
            i = int(rng.integers(0, len(xs)))
            cx, cy = float(xs[i]) + float(rng.uniform(-0.5, 0.5)), float(ys[i]) + float(rng.uniform(-0.5, 0.5))
            if all(math.hypot(cx - px, cy - py) >= r + pr + 3.0 for px, py, pr in placed):
                return cx, cy, r
        return None

    for where, count in (("inside", n_in), ("outside", n_out)):
        for _ in range(count):
            spot = place(where == "inside")
            if spot is None:
                continue
            cx, cy, r = spot
            placed.append(spot)
            mask = _paint_flow_disc(frame, (cx, cy), r, rng, sign=1.0 if rng.uniform() < 0.5 else -1.0)
            flow |= mask
            vessels.append({"where": where, "center_px": [round(cx, 3), round(cy, 3)], "radius_px": round(r, 3),
                            "pixels": int(mask.sum())})
    intraneural = int((flow & nerve).sum())
    count_in = sum(1 for v in vessels if v["where"] == "inside")
    grade = 0 if count_in == 0 else 1 if count_in == 1 else 2 if count_in <= 3 else 3
    ref = tissue_region(x0, y0, w, h, scale)
    regions = [ref, UltrasoundRegion(
        x0=bx0, y0=by0, x1=bx1, y1=by1, delta_x=scale / 10.0, delta_y=scale / 10.0,
        ref_x0=(x0 + ref.ref_x0) - bx0, ref_y0=(y0 + ref.ref_y0) - by0, spatial_format=1, data_type=2,
        flags=2, transducer_frequency_khz=6200)]
    return {
        "frame": frame,
        "grey": grey,
        "regions": regions,
        "origin_px": (x0, y0),
        "mm_per_px": scale,
        "truth": {
            "contour_px": truth["contour_px"],
            "csa_mm2": truth["csa_mm2"],
            "nerve_px": int(nerve.sum()),
            "flow_mask": flow,
            "flow_px": int(flow.sum()),
            "intraneural_px": intraneural,
            "vascularity_index": 100.0 * intraneural / max(int(nerve.sum()), 1),
            "vessel_count": count_in,
            "vascularity_grade": grade,
            "vessels": vessels,
            "colour_box_px": box,
            "tissue_region_px": [x0, y0, x0 + w - 1, y0 + h - 1],
        },
    }


def write_doppler_nerve_file(
    path: str | Path,
    case: dict[str, Any],
    *,
    photometric: str = "RGB",
    transfer_syntax: str = ExplicitVRLittleEndian,
    flow: bool = True,
    jpeg_quality: int = 92,
    label: str = "doppler",
    study_label: str | None = None,
) -> Dataset:
    """Write a case of :func:`make_doppler_nerve_case` as an ultrasound DICOM file.

    ``flow=False`` writes the same frame without colour (gray in every
    channel, or MONOCHROME2), without the colour box and with Ultrasound
    Color Data Present 0: the greyscale twin. The SOP Instance and Series
    UIDs derive from ``label``, the Study Instance UID from ``study_label``
    (default ``label``): files with one ``study_label`` form one study.
    """
    frame = case["frame"] if flow else case["grey"]
    if photometric == "MONOCHROME2":
        frame = frame[..., 0].copy()
    regions = case["regions"] if flow else case["regions"][:1]
    patient = _PATIENTS["A"]
    study = StudyInfo(uid=str(deterministic_uid("doppler-study", study_label or label)), **_STUDIES["A"])
    series = SeriesInfo(uid=str(deterministic_uid("doppler-series", label)), number=19,
                        description="R MEDIAN NERVE WRIST", laterality="R", body_part="WRIST",
                        protocol_name="MSK NERVE", time="092000")
    return write_ultrasound_dicom(
        path, frame, patient=patient, study=study, series=series,
        sop_instance_uid=str(deterministic_uid("doppler-instance", label)), photometric=photometric,
        transfer_syntax=transfer_syntax, regions=regions, color_data_present=flow,
        image_type_value4="0011" if flow else "0001", jpeg_quality=jpeg_quality,
        pulse_repetition_frequency_hz=DOPPLER_PRF_HZ if flow else None,
    )


# --------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of the Sequence of Ultrasound Regions (0018,6011).

    Location bounds are inclusive frame pixel indices; reference pixel coordinates
    are relative to ``(x0, y0)`` as the standard says; deltas are in the physical
    units (3 = cm) per pixel.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    delta_x: float
    delta_y: float
    ref_x0: int = 0
    ref_y0: int = 0
    ref_value_x: float = 0.0
    ref_value_y: float = 0.0
    spatial_format: int = 1
    data_type: int = 1
    flags: int = 2
    units_x: int = 3
    units_y: int = 3
    transducer_frequency_khz: int | None = None

    def to_dataset(self) -> Dataset:
        """Return the sequence item as a :class:`pydicom.dataset.Dataset`."""
        it = Dataset()
        it.RegionSpatialFormat = self.spatial_format
        it.RegionDataType = self.data_type
        it.RegionFlags = self.flags
        it.RegionLocationMinX0 = self.x0
        it.RegionLocationMinY0 = self.y0
        it.RegionLocationMaxX1 = self.x1
        it.RegionLocationMaxY1 = self.y1
        it.ReferencePixelX0 = self.ref_x0
        it.ReferencePixelY0 = self.ref_y0
        it.PhysicalUnitsXDirection = self.units_x
        it.PhysicalUnitsYDirection = self.units_y
        it.ReferencePixelPhysicalValueX = float(self.ref_value_x)
        it.ReferencePixelPhysicalValueY = float(self.ref_value_y)
        it.PhysicalDeltaX = float(self.delta_x)
        it.PhysicalDeltaY = float(self.delta_y)
        if self.transducer_frequency_khz is not None:
            it.TransducerFrequency = int(self.transducer_frequency_khz)
        return it


def tissue_region(
    x0: int, y0: int, width: int, height: int, mm_per_px: float, *, data_type: int = 1, flags: int = 3,
    transducer_frequency_khz: int | None = 12000,
) -> UltrasoundRegion:
    """B-mode region covering ``width x height`` pixels at ``(x0, y0)``.

    The reference pixel is the top centre of the region (lateral 0, depth 0 at the
    skin), as linear-array scanners write it.
    """
    return UltrasoundRegion(
        x0=x0, y0=y0, x1=x0 + width - 1, y1=y0 + height - 1, delta_x=mm_per_px / 10.0, delta_y=mm_per_px / 10.0,
        ref_x0=width // 2, ref_y0=0, spatial_format=1, data_type=data_type, flags=flags,
        transducer_frequency_khz=transducer_frequency_khz,
    )


@dataclass(frozen=True)
class PatientInfo:
    """Patient module attributes."""

    name: str
    patient_id: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudyInfo:
    """General Study module attributes."""

    uid: str
    date: str
    time: str
    description: str
    accession: str
    study_id: str
    referring_physician: str = ""


@dataclass(frozen=True)
class SeriesInfo:
    """General Series attributes plus the image-level laterality."""

    uid: str
    number: int
    description: str
    laterality: str
    body_part: str
    protocol_name: str = ""
    time: str = ""


@dataclass(frozen=True)
class EquipmentInfo:
    """General Equipment module attributes."""

    manufacturer: str = "MSKUS Synthetic"
    model: str = "SYN-L12"
    station: str = "MSKUS-SIM-01"
    serial: str = "SIM0001"
    software: str = "mskus-sample-data 1"
    institution: str = "MSKUS Synthetic Imaging Lab"


def write_ultrasound_dicom(
    path: str | Path,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    patient: PatientInfo,
    study: StudyInfo,
    series: SeriesInfo,
    sop_instance_uid: str,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    regions: Sequence[UltrasoundRegion] | None = None,
    pixel_spacing_mm: float | None = None,
    instance_number: int = 1,
    content_time: str | None = None,
    frame_time_ms: float | None = None,
    color_data_present: bool = False,
    image_type_value4: str = "0001",
    equipment: EquipmentInfo = EquipmentInfo(),
    jpeg_quality: int = 92,
    multiframe: bool | None = None,
    pulse_repetition_frequency_hz: int | None = None,
    palette: np.ndarray | None = None,
) -> Dataset:
    """Write an Ultrasound (Multi-frame) Image Storage file like a scanner export.

    Parameters
    ----------
    path
        Output file.
    frames
        One frame ``(rows, cols)`` / ``(rows, cols, 3)`` or a stack ``(n, rows, cols[, 3])``
        of ``uint8`` pixels.  Gray frames are replicated into 3 channels for RGB and
        YBR photometrics.
    patient, study, series, equipment
        Module attributes.
    sop_instance_uid
        SOP Instance UID (use :func:`deterministic_uid` for reproducible files).
    photometric
        ``MONOCHROME2``, ``RGB``, ``YBR_FULL`` (native: stored as Y, Cb, Cr; or JPEG Baseline
        without chroma subsampling), ``YBR_FULL_422`` (requires JPEG Baseline) or
        ``PALETTE COLOR`` (RGB frames mapped to the indices of ``palette``).
    transfer_syntax
        Explicit VR Little Endian, RLE Lossless or JPEG Baseline (8 bit).  JPEG is
        encoded with OpenCV (libjpeg-turbo; 4:2:2 chroma subsampling for YBR_FULL_422,
        none for YBR_FULL) and encapsulated.
    regions
        Items of the Sequence of Ultrasound Regions; ``None`` omits the sequence.
    pixel_spacing_mm
        Write Pixel Spacing (0028,0030) with this isotropic value.
    instance_number, content_time
        Instance Number and Content Time (defaults to the series time).
    frame_time_ms
        Frame Time for multi-frame files (Frame Increment Pointer points to it).
    color_data_present
        Ultrasound Color Data Present (0028,0014).
    image_type_value4
        Fourth value of Image Type (``0001`` 2-D, ``0011`` 2-D + colour flow).
    jpeg_quality
        JPEG quality (1-100).
    multiframe
        Force Ultrasound Multi-frame Image Storage; default: when more than one frame.
    pulse_repetition_frequency_hz
        Pulse Repetition Frequency (0018,6032) of the colour-flow acquisition.
    palette
        ``(256, 3)`` ``uint8`` lookup table for ``PALETTE COLOR`` (default :func:`doppler_palette`).

    Returns
    -------
    pydicom.dataset.Dataset
        The dataset as written.
    """
    arr = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if arr.dtype != np.uint8:
        raise ValueError("frames must be uint8")
    color = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    lut: np.ndarray | None = None
    if photometric == "PALETTE COLOR":
        lut = doppler_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] != 3):
            arr = np.repeat(arr[..., None], 3, axis=-1)
        arr = rgb_to_palette(arr, lut)
        if arr.ndim == 2:
            arr = arr[None]
    elif color:
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] != 3):
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim == 3:
            arr = arr[None]
    else:
        if arr.ndim == 3 and arr.shape[-1] == 3:
            raise ValueError("RGB frames need photometric RGB or YBR_FULL_422")
        if arr.ndim == 2:
            arr = arr[None]
    n_frames = arr.shape[0]
    is_multi = n_frames > 1 if multiframe is None else bool(multiframe)
    sop_class = ULTRASOUND_MULTIFRAME_IMAGE_STORAGE if is_multi else ULTRASOUND_IMAGE_STORAGE
    ts = UID(transfer_syntax)
    if photometric == "YBR_FULL_422" and ts != JPEGBaseline8Bit:
        raise ValueError("YBR_FULL_422 is only written with JPEG Baseline")
    if ts == JPEGBaseline8Bit and photometric not in ("YBR_FULL_422", "YBR_FULL"):
        raise ValueError("JPEG Baseline files are written as YBR_FULL_422 or YBR_FULL")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = deterministic_uid("implementation-class")
    meta.ImplementationVersionName = "MSKUS_SYNTH_1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MUSCULOSKELETAL", image_type_value4]
    ctime = content_time or series.time or study.time
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = ctime
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = UID(sop_instance_uid)
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.AcquisitionDateTime = study.date + ctime
    ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = series.time or study.time
    ds.ContentTime = ctime
    ds.AccessionNumber = study.accession
    ds.Modality = "US"
    ds.Manufacturer = equipment.manufacturer
    ds.InstitutionName = equipment.institution
    ds.ReferringPhysicianName = study.referring_physician
    ds.StationName = equipment.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = equipment.model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.BodyPartExamined = series.body_part
    ds.DeviceSerialNumber = equipment.serial
    ds.SoftwareVersions = equipment.software
    if series.protocol_name:
        ds.ProtocolName = series.protocol_name
    if is_multi and frame_time_ms is not None:
        ds.FrameTime = f"{frame_time_ms:.3f}"
        ds.CineRate = int(round(1000.0 / frame_time_ms))
        ds.RecommendedDisplayFrameRate = int(round(1000.0 / frame_time_ms))
        ds.EffectiveDuration = f"{frame_time_ms * n_frames / 1000.0:.4f}"
        ds.PreferredPlaybackSequencing = 0
    if regions:
        ds.SequenceOfUltrasoundRegions = DicomSequence([r.to_dataset() for r in regions])
    ds.StudyInstanceUID = UID(study.uid)
    ds.SeriesInstanceUID = UID(series.uid)
    ds.StudyID = study.study_id
    ds.SeriesNumber = int(series.number)
    ds.InstanceNumber = int(instance_number)
    ds.PatientOrientation = ""
    # Image Laterality only: Laterality (0020,0060) is not allowed alongside it
    ds.ImageLaterality = series.laterality
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    if is_multi:
        ds.NumberOfFrames = n_frames
        if frame_time_ms is not None:
            ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
    ds.Rows = int(arr.shape[1])
    ds.Columns = int(arr.shape[2])
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = [f"{pixel_spacing_mm:.6g}", f"{pixel_spacing_mm:.6g}"]
    ds.UltrasoundColorDataPresent = 1 if color_data_present else 0
    if pulse_repetition_frequency_hz is not None:
        ds.PulseRepetitionFrequency = int(pulse_repetition_frequency_hz)
    if lut is not None:
        for name, channel in (("Red", 0), ("Green", 1), ("Blue", 2)):
            setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{name}PaletteColorLookupTableData", (lut[:, channel].astype("<u2") * 257).tobytes())
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES"

    raw = arr if is_multi else arr[0]
    if ts == JPEGBaseline8Bit:
        sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if photometric == "YBR_FULL" else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality),
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling,
                  cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
        blobs: list[bytes] = []
        for fr in arr:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(fr, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            blobs.append(buf.tobytes())
        ds.PixelData = encapsulate(blobs, has_bot=is_multi)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ratio = arr.nbytes / sum(len(b) for b in blobs)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{ratio:.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.LossyImageCompression = "00"
        if photometric == "YBR_FULL":
            raw = convert_color_space(np.ascontiguousarray(raw), "RGB", "YBR_FULL")
        ds.PixelData = np.ascontiguousarray(raw).tobytes()
        ds["PixelData"].VR = "OB"
        if ts == RLELossless:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        elif ts != ExplicitVRLittleEndian:
            raise ValueError(f"unsupported transfer syntax {ts}")
    ds.file_meta.TransferSyntaxUID = ts
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def read_luma_frames(path: str | Path) -> np.ndarray:
    """Decode a file with pydicom and return its frames as luma, shape ``(n, rows, cols)``."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    if n == 1:
        arr = arr[None]
    if spp == 3:
        return np.stack([frame_luma(f) for f in arr])
    return arr.astype(np.float64)


# --------------------------------------------------------------------------------------
# The bundled sample data set
# --------------------------------------------------------------------------------------

_DEVICE = "MSKUS-SYN L12-5"


@dataclass
class _FileSpec:
    stem: str
    kind: str
    style: str
    study: str
    description: str
    laterality: str
    body_part: str
    mm_per_px: float
    calibration: str = "regions"  # regions | pixel_spacing | none
    photometric: str = "MONOCHROME2"
    transfer_syntax: str = ExplicitVRLittleEndian
    n_frames: int = 1
    scene_kwargs: dict[str, Any] = field(default_factory=dict)
    doppler: bool = False
    seed: int = 0


_PATIENTS = {
    "A": PatientInfo("MSKUS^ANNA^SYNTHETIC", "MSKUS-0001", "19710418", "F"),
    "B": PatientInfo("MSKUS^BERT^SYNTHETIC", "MSKUS-0002", "19480902", "M"),
    "C": PatientInfo("MSKUS^CARL^SYNTHETIC", "MSKUS-0003", "19860127", "M"),
}
_STUDIES = {
    "A": dict(date="20250314", time="091500", description="US UPPER LIMB NERVES", accession="SYN0001", study_id="1"),
    "B": dict(date="20250318", time="141000", description="US THIGH MUSCLES", accession="SYN0002", study_id="1"),
    "C": dict(date="20250402", time="103000", description="US NEUROMUSCULAR", accession="SYN0003", study_id="1"),
}

_FILES: list[_FileSpec] = [
    _FileSpec("01_nerve_mono", "nerve", "mono", "A", "R MEDIAN NERVE WRIST", "R", "WRIST", 0.080,
              scene_kwargs=dict(vessel=True), seed=101),
    _FileSpec("02_nerve_rgb", "nerve", "rgb", "A", "L ULNAR NERVE ELBOW", "L", "ELBOW", 0.065,
              photometric="RGB", scene_kwargs=dict(vessel=False), seed=102),
    _FileSpec("03_nerve_jpeg", "nerve", "jpeg", "C", "R TIBIAL NERVE ANKLE", "R", "ANKLE", 0.070,
              photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit, scene_kwargs=dict(vessel=True), seed=103),
    _FileSpec("04_muscle_mono", "muscle", "mono", "B", "R RECTUS FEMORIS", "R", "THIGH", 0.100,
              scene_kwargs=dict(bone=False, tilt_deg=1.2, thickness_mm=18.0), seed=104),
    _FileSpec("05_muscle_bone", "muscle", "bone", "B", "R VASTUS INTERMEDIUS", "R", "THIGH", 0.110,
              scene_kwargs=dict(bone=True, tilt_deg=3.0, curvature=0.004, thickness_mm=21.0), seed=105),
    _FileSpec("06_muscle_jpeg", "muscle", "jpeg", "C", "L BICEPS BRACHII", "L", "ARM", 0.090,
              photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit,
              scene_kwargs=dict(bone=False, myopathic=True, tilt_deg=-2.0, thickness_mm=15.0), seed=106),
    _FileSpec("07_nerve_cine", "nerve", "cine", "A", "R MEDIAN NERVE FOREARM", "R", "ARM", 0.090,
              transfer_syntax=RLELossless, n_frames=10, scene_kwargs=dict(vessel=True), seed=107),
    _FileSpec("08_muscle_uncalibrated", "muscle", "uncalibrated", "B", "L RECTUS FEMORIS", "L", "THIGH", 0.095,
              calibration="none", scene_kwargs=dict(bone=False, tilt_deg=-0.8, thickness_mm=14.0), seed=108),
    _FileSpec("09_nerve_doppler", "nerve", "doppler", "A", "R ULNAR NERVE WRIST", "R", "WRIST", 0.075,
              photometric="RGB", doppler=True, scene_kwargs=dict(vessel=True, vessel_gap_mm=2.6), seed=109),
    _FileSpec("10_muscle_pixelspacing", "muscle", "pixel_spacing", "C", "L TIBIALIS ANTERIOR", "L", "LEG", 0.085,
              calibration="pixel_spacing", scene_kwargs=dict(bone=False, tilt_deg=0.5, thickness_mm=16.0), seed=110),
]


def _layout(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Random tissue-region placement ``(x0, y0, width, height)`` in the 800 x 600 frame."""
    w = int(rng.integers(380, 421))
    h = int(rng.integers(390, 411))
    x0 = int(rng.integers(100, 131))
    y0 = int(rng.integers(62, 91))
    return x0, y0, w, h


def _text(spec: _FileSpec, h: int, gain: int) -> tuple[list[str], list[str]]:
    depth_cm = h * spec.mm_per_px / 10.0
    fr = "30 Hz" if spec.n_frames > 1 else f"{int(18 + (spec.seed % 7) * 2)} Hz"
    left = [_DEVICE, f"D {depth_cm:.1f}cm  G {gain}", spec.description]
    right = ["MI 0.9  TIs 0.1", fr]
    if spec.doppler:
        right.append("CF 6.2MHz PRF 1.5k")
    return left, right


def _build_file(spec: _FileSpec, out_dir: Path) -> dict[str, Any]:
    rng = np.random.default_rng([20250314, spec.seed])
    x0, y0, w, h = _layout(rng)
    shape_px = (h, w)
    study_uid = str(deterministic_uid("study", spec.study))
    series_uid = str(deterministic_uid("series", spec.stem))
    sop_uid = str(deterministic_uid("instance", spec.stem))
    series_number = int(spec.stem[:2])
    gain = int(rng.integers(44, 60))
    origin = (x0, y0)
    region_box = [x0, y0, x0 + w - 1, y0 + h - 1]

    tissues: list[np.ndarray]
    truths: list[dict[str, Any]]
    scene_obj: Any
    if spec.kind == "nerve":
        scene_obj = sample_nerve_scene(rng, spec.mm_per_px, shape_px=shape_px, **spec.scene_kwargs)
        if spec.n_frames > 1:
            tissues, truths = render_nerve_cine(rng, spec.mm_per_px, spec.n_frames, scene=scene_obj)
        else:
            img, tr = render_nerve_scene(rng, spec.mm_per_px, scene=scene_obj)
            tissues, truths = [img], [tr]
    else:
        scene_obj = sample_muscle_scene(rng, spec.mm_per_px, shape_px=shape_px, **spec.scene_kwargs)
        img, tr = render_muscle_scene(rng, spec.mm_per_px, scene=scene_obj)
        tissues, truths = [img], [tr]
    rgb = spec.photometric in ("RGB", "YBR_FULL_422")
    left, right = _text(spec, h, gain)
    frames = [compose_frame(t, origin, mm_per_px=spec.mm_per_px, text_lines=left, right_text=right, rgb=rgb,
                            color_bar=spec.doppler) for t in tissues]
    ftruths = [truth_to_frame(t, origin) for t in truths]

    regions: list[UltrasoundRegion] | None = None
    extra: dict[str, Any] = {}
    if spec.calibration == "regions":
        regions = [tissue_region(x0, y0, w, h, spec.mm_per_px)]
    if spec.doppler:
        ves = ftruths[0]["vessel"]
        if ves is None:
            raise RuntimeError("Doppler file needs a vessel")
        vcx, vcy = ves["center_px"]
        rv = ves["radius_px"]
        gap_px = (scene_obj.vessel_gap_mm or 1.5) / spec.mm_per_px
        mx = min(1.0 / spec.mm_per_px, 0.45 * gap_px)
        my = 2.5 / spec.mm_per_px
        bx0 = max(int(math.floor(vcx - rv - mx)), x0)
        bx1 = min(int(math.ceil(vcx + rv + mx)), x0 + w - 1)
        by0 = max(int(math.floor(vcy - rv - my)), y0)
        by1 = min(int(math.ceil(vcy + rv + my)), y0 + h - 1)
        box = [bx0, by0, bx1, by1]
        n_col = paint_color_doppler(frames[0], (vcx, vcy), rv, rng, box_px=box)
        ref = regions[0] if regions else tissue_region(x0, y0, w, h, spec.mm_per_px)
        regions = (regions or []) + [UltrasoundRegion(
            x0=bx0, y0=by0, x1=bx1, y1=by1, delta_x=spec.mm_per_px / 10.0, delta_y=spec.mm_per_px / 10.0,
            ref_x0=(x0 + ref.ref_x0) - bx0, ref_y0=(y0 + ref.ref_y0) - by0, spatial_format=1, data_type=2,
            flags=2, transducer_frequency_khz=6200)]
        extra = {"doppler_region_px": box, "color_pixels": n_col}

    path = out_dir / f"{spec.stem}.dcm"
    patient = _PATIENTS[spec.study]
    st = _STUDIES[spec.study]
    study = StudyInfo(uid=study_uid, **st)
    s_time = f"{int(st['time'][:2]):02d}{int(st['time'][2:4]) + series_number:02d}00"
    series = SeriesInfo(uid=series_uid, number=series_number, description=spec.description,
                        laterality=spec.laterality, body_part=spec.body_part,
                        protocol_name="MSK NERVE" if spec.kind == "nerve" else "MSK MUSCLE", time=s_time)
    write_ultrasound_dicom(
        path, np.stack(frames), patient=patient, study=study, series=series, sop_instance_uid=sop_uid,
        photometric=spec.photometric, transfer_syntax=spec.transfer_syntax, regions=regions,
        pixel_spacing_mm=spec.mm_per_px if spec.calibration == "pixel_spacing" else None,
        frame_time_ms=(1000.0 / 30.0) if spec.n_frames > 1 else None, color_data_present=spec.doppler,
        image_type_value4="0011" if spec.doppler else "0001", multiframe=spec.n_frames > 1,
    )

    # truth from the decoded file (JPEG: what a reader gets back)
    luma = read_luma_frames(path)
    calibrated = spec.calibration != "none"
    out_frames: list[dict[str, Any]] = []
    for i, tr in enumerate(ftruths):
        d: dict[str, Any] = {"index": i, "frame_number": i + 1}
        d.update({k: v for k, v in tr.items() if not k.startswith("echogenicity")})
        d["mm_per_px"] = spec.mm_per_px if calibrated else None
        d["render_mm_per_px"] = spec.mm_per_px
        d["tissue_region_px"] = region_box
        d["series_description"] = spec.description
        d["laterality"] = spec.laterality
        d["sop_instance_uid"] = sop_uid
        d["series_instance_uid"] = series_uid
        d["study_instance_uid"] = study_uid
        if spec.kind == "nerve":
            d.update(nerve_echogenicity(luma[i], tr["contour_px"]))
        else:
            d.update(_muscle_roi_stats(luma[i], scene_obj, region_box, origin))
            if not calibrated:
                for key in ("thickness_mm", "thickness_mean_central_half_mm", "subcutaneous_thickness_mm",
                            "vertical_gap_at_center_mm", "superficial_fascia_thickness_mm",
                            "deep_band_thickness_mm"):
                    d[key] = None
        if not calibrated and spec.kind == "nerve":
            for key in ("csa_mm2", "perimeter_mm", "major_axis_mm", "minor_axis_mm"):
                d[key] = None
        d.update(extra)
        out_frames.append(d)

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    truth_doc = {
        "file": path.name,
        "kind": spec.kind,
        "style": spec.style,
        "calibration": spec.calibration,
        "sop_class_uid": str(ds.SOPClassUID),
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "number_of_frames": len(out_frames),
        "frame_time_ms": round(1000.0 / 30.0, 3) if spec.n_frames > 1 else None,
        "mm_per_px": spec.mm_per_px if calibrated else None,
        "render_mm_per_px": spec.mm_per_px,
        "tissue_region_px": region_box,
        "series_description": spec.description,
        "laterality": spec.laterality,
        "patient_id": patient.patient_id,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "sop_instance_uid": sop_uid,
        "frames": out_frames,
    }
    (out_dir / f"{spec.stem}.json").write_text(json.dumps(truth_doc, indent=1) + "\n")
    LOG.info("wrote %s (%d frame(s), %s)", path.name, len(out_frames), spec.style)
    return {
        "file": path.name,
        "truth": f"{spec.stem}.json",
        "kind": spec.kind,
        "style": spec.style,
        "study": spec.study,
        "study_instance_uid": study_uid,
        "patient_id": patient.patient_id,
        "series_description": spec.description,
        "laterality": spec.laterality,
        "calibration": spec.calibration,
        "photometric_interpretation": spec.photometric,
        "transfer_syntax_uid": str(spec.transfer_syntax),
        "number_of_frames": len(out_frames),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def generate_sample_data(out_dir: str | Path, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Generate the bundled sample studies into ``out_dir``.

    Parameters
    ----------
    out_dir
        Destination folder (created if needed).
    only
        Optional stems (e.g. ``["01_nerve_mono"]``) to restrict the output; the
        manifest is then not written.

    Returns
    -------
    list of dict
        Manifest entries (file, truth, kind, style, study, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sel = set(only) if only is not None else None
    entries = [_build_file(spec, out) for spec in _FILES if sel is None or spec.stem in sel]
    if sel is None:
        manifest = {
            "description": "Synthetic musculoskeletal ultrasound sample studies (see README.md)",
            "generator": "sample_data/generate.py",
            "studies": {
                k: {"patient_id": _PATIENTS[k].patient_id, "patient_name": _PATIENTS[k].name,
                    "study_instance_uid": str(deterministic_uid("study", k)),
                    "study_description": _STUDIES[k]["description"]}
                for k in sorted(_PATIENTS)
            },
            "files": entries,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python sample_data/generate.py [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--only", nargs="*", default=None, help="generate only these file stems")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    entries = generate_sample_data(args.out, args.only)
    LOG.info("%d files in %s", len(entries), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
